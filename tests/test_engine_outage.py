"""An unreachable or hanging engine gives a clear 503, fast, never a 500 or a hang.

A real server cannot be made to hang on demand, so the slow engine is a socket
that accepts connections and never answers (fault injection); the unreachable one
is a closed port.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from relevance.api import create_app
from relevance.embedder import Embedder
from relevance.errors import EngineError
from tests.conftest import SERVER_URLS, make_services

SERVER_ENGINES = ["elasticsearch", "opensearch"]
# Read at import: the autouse fixture clears RELEVANCE_* variables inside each test.
OPENSEARCH_PREPARED = bool(os.environ.get("RELEVANCE_TEST_OPENSEARCH_URL"))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def hanging_server() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # read nothing, answer nothing
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def client_for(tmp_path: Path, embedder: Embedder, engine: str, url: str, timeout: float = 0.5):
    services = make_services(tmp_path, embedder, engine=engine, engine_url=url, engine_timeout=timeout)
    return create_app(services=services).test_client()


@pytest.mark.parametrize("engine", SERVER_ENGINES)
def test_unreachable_engine_is_a_503_and_not_ready(tmp_path: Path, embedder: Embedder, engine: str) -> None:
    client = client_for(tmp_path, embedder, engine, closed_port_url())
    response = client.get("/search?q=drill")
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] in ("engine_unavailable", "index_not_ready") and engine in body["detail"]
    # The layer's words, not the HTTP client's exception text.
    assert "could not connect" in body["detail"] and "Error(" not in body["detail"], body["detail"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/products/d1").status_code == 503
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("engine", SERVER_ENGINES)
def test_a_failed_engine_call_is_logged_without_the_clients_traceback(
    tmp_path: Path, embedder: Embedder, engine: str, caplog
) -> None:
    client = client_for(tmp_path, embedder, engine, closed_port_url())
    with caplog.at_level(logging.WARNING):
        assert client.get("/search?q=drill").status_code == 503
    assert [record for record in caplog.records if record.exc_info] == [], "one line per failure, no traceback"
    assert any(engine in record.getMessage() for record in caplog.records), "the layer's own line says what failed"


@pytest.mark.parametrize("engine", SERVER_ENGINES)
def test_hanging_engine_times_out_into_a_503(
    tmp_path: Path, embedder: Embedder, engine: str, hanging_server: str
) -> None:
    client = client_for(tmp_path, embedder, engine, hanging_server, timeout=0.5)
    started = time.monotonic()
    response = client.get("/search?q=drill")
    elapsed = time.monotonic() - started
    assert response.status_code == 503 and response.get_json()["error"] == "engine_unavailable"
    detail = response.get_json()["detail"]
    assert "no answer within 0.5 s" in detail and "Error(" not in detail, detail
    assert elapsed < 5, f"took {elapsed:.1f} s with a 0.5 s engine timeout"


ENGINES_CLI = [sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "engines.py")]


def test_engines_cli_refuses_a_run_dir_without_node_data(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*ENGINES_CLI, "start", "opensearch", "--run-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert refused.returncode == 2 and f"--run-dir {tmp_path} holds no node data" in refused.stderr
    missing = subprocess.run(
        [*ENGINES_CLI, "stop", f"never-started-{os.getpid()}", "--keep-data"], capture_output=True, text=True
    )
    assert missing.returncode == 0 and missing.stdout.strip().endswith("not running")


def _engines_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "engines_script", Path(__file__).resolve().parents[1] / "scripts" / "engines.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.engines
@pytest.mark.slow
def test_engine_killed_mid_test_gives_503s_then_recovers_without_an_app_restart(
    tmp_path: Path, embedder: Embedder
) -> None:
    if not OPENSEARCH_PREPARED:
        pytest.skip("needs the OpenSearch install that .ci/run prepares")
    from tests.conftest import CATALOG

    engines = _engines_script()
    name = f"outage-{os.getpid()}"
    node = engines.start("opensearch", None, "512m", 180, name=name)
    try:
        services = make_services(tmp_path, embedder, engine="opensearch", engine_url=node["url"], engine_timeout=2.0)
        services.index_catalog(CATALOG)
        client = create_app(services=services).test_client()
        assert client.get("/search?q=cordless+drill").status_code == 200
        # as a start interrupted between creating and dropping its probe index leaves it
        assert requests.put(f"{node['url']}/relevance-start-probe", timeout=30).status_code == 200

        engines.stop(name, keep_data=True)  # the engine dies under a running app
        for _ in range(3):
            down = client.get("/search?q=cordless+drill")
            assert down.status_code == 503 and down.get_json()["error"] == "engine_unavailable"
        assert client.get("/readyz").status_code == 503

        # Restarted through the command line on the data the stop kept, as an operator would.
        port = node["url"].rsplit(":", 1)[1]
        restart = [*ENGINES_CLI, "start", "opensearch", "--port", port, "--name", name, "--run-dir", node["run_dir"]]
        assert (
            json.loads(subprocess.run(restart, check=True, capture_output=True, text=True).stdout)["url"] == node["url"]
        )
        body = client.get("/search?q=cordless+drill&size=3").get_json()  # same app, no restart
        assert body["results"][0]["product_id"] in {"d1", "d2", "d3", "d4"}
        assert client.get("/readyz").status_code == 200
    finally:
        engines.stop(name)


@pytest.mark.engines
@pytest.mark.parametrize("engine", SERVER_ENGINES)
def test_a_refused_request_names_the_status_and_the_servers_reason(engine: str) -> None:
    url = SERVER_URLS[engine]
    if not url:
        pytest.skip(f"no {engine} node")
    if engine == "elasticsearch":
        from relevance.engines.elasticsearch import ElasticsearchEngine as Engine
    else:
        from relevance.engines.opensearch import OpenSearchEngine as Engine
    adapter = Engine(url)
    with pytest.raises(EngineError) as refused:  # index names must be lower case: the server answers 400
        adapter._call("create an index", adapter.client.indices.create, index="Not_Lower_Case")
    assert str(refused.value) == (
        f"{engine} at {url} failed to create an index: answered HTTP 400: invalid_index_name_exception:"
        " Invalid index name [Not_Lower_Case], must be lowercase"
    )
