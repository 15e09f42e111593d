"""The whole product from the outside: CLI index, gunicorn serving wsgi.py, HTTP search, CLI rank."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import CATALOG

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "relevance", "--data-dir", str(data_dir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def wait_until_ready(base: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    """Poll /readyz until 200; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or workers still loading
            pass
        time.sleep(0.5)
    pytest.fail(f"not ready in {timeout:.0f} s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("e2e")
    result = cli(directory, "index", str(CATALOG), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["indexed"] == 40 and summary["rejected"] == 0
    assert "index" in result.stderr  # the progress bar
    return directory


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {**os.environ, "RELEVANCE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, process, log_path, 120)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_search_over_http(server: str) -> None:
    response = requests.get(f"{server}/search", params={"q": "cordless drill", "size": 5}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["results"][0]["product_id"] in {"d1", "d2", "d3", "d4"}
    assert "embed;dur=" in response.headers["Server-Timing"]
    error = requests.get(f"{server}/search", params={"q": "drill", "size": 1000}, timeout=10)
    assert error.status_code == 422 and error.json()["field"] == "size"


def test_the_longest_query_reaches_the_api(server: str) -> None:
    """500 three-byte characters are a valid q, 4,500 bytes percent-encoded: over gunicorn's
    default request line (answered in HTML); 501 are a JSON error naming q."""
    longest = requests.get(f"{server}/search", params={"q": "钻" * 500, "size": 1}, timeout=30)
    assert len(longest.request.url) > 4094
    assert longest.status_code == 200 and "results" in longest.json()
    too_long = requests.get(f"{server}/search", params={"q": "钻" * 501}, timeout=30)
    assert too_long.status_code == 422 and too_long.json()["field"] == "q"


def test_rank_writes_trec_runs(data_dir: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.csv"
    queries.write_text("query_id,query\n1,cordless drill\n2,velvet chair\n")
    run = tmp_path / "run.txt"
    result = cli(data_dir, "rank", "--queries", str(queries), "--out", str(run), "--depth", "5", "--tag", "e2e")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in run.read_text().splitlines()]
    assert len(rows) == 10 and all(len(r) == 6 and r[1] == "Q0" and r[5] == "e2e" for r in rows)
    assert [r[0] for r in rows] == ["1"] * 5 + ["2"] * 5

    candidates = tmp_path / "candidates.csv"
    candidates.write_text("query_id,product_id\n1,b1\n1,d1\n1,f5\n2,f1\n2,f9\n")
    result = cli(data_dir, "rank", "--queries", str(queries), "--out", str(run), "--candidates", str(candidates))
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in run.read_text().splitlines()]
    assert [(r[0], r[2]) for r in rows][:1] == [("1", "d1")]
    assert sorted(r[2] for r in rows if r[0] == "1") == ["b1", "d1", "f5"]
    assert sorted(r[2] for r in rows if r[0] == "2") == ["f1", "f9"]


def test_cli_search_prints_a_table(data_dir: Path) -> None:
    result = cli(data_dir, "search", "velvet accent chair", "--size", "3", "--explain")
    assert result.returncode == 0, result.stderr
    assert "f1" in result.stdout and "timings" in result.stdout


def test_cli_errors_are_friendly(tmp_path: Path) -> None:
    result = cli(tmp_path, "search", "drill")
    assert result.returncode != 0
    assert "run `relevance index CATALOG` first" in result.stderr and "Traceback" not in result.stderr


def test_a_reindex_is_picked_up_by_running_workers(server: str, data_dir: Path, tmp_path: Path) -> None:
    # Last in the module on purpose: it swaps the shared index to a smaller catalog.
    before = requests.get(f"{server}/readyz", timeout=10).json()["index_version"]
    smaller = tmp_path / "smaller.jsonl"
    smaller.write_text("\n".join(CATALOG.read_text().splitlines()[:10]) + "\n")
    result = cli(data_dir, "index", str(smaller), "--json")
    assert result.returncode == 0, result.stderr
    after = json.loads(result.stdout)["version"]
    for _ in range(4):  # both workers, whichever answers
        ready = requests.get(f"{server}/readyz", timeout=10).json()
        assert ready["index_version"] == after != before and ready["products"] == 10


def test_demo_indexes_serves_and_stops_cleanly(tmp_path: Path) -> None:
    """The README's demo command: index if needed, serve, and exit promptly on SIGTERM."""
    port = free_port()
    log_path = tmp_path / "demo.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relevance",
                "--data-dir",
                str(tmp_path / "var"),
                "demo",
                "--catalog",
                str(CATALOG),
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_ready(base, process, log_path, 180)
            body = requests.get(f"{base}/search", params={"q": "cordless drill", "size": 3}, timeout=10).json()
            assert body["mode"] == "hybrid" and body["results"][0]["product_id"] in {"d1", "d2", "d3", "d4"}
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                pytest.fail(f"demo did not stop within 30 s of SIGTERM:\n{log_path.read_text()}")
    assert "indexed 40 products" in log_path.read_text()
