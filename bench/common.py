"""Helpers the benchmark scripts share: the Home Depot catalog, an index, a gunicorn server."""

from __future__ import annotations

import argparse
import csv
import os
import platform
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from relevance.config import Settings, load_settings  # noqa: E402
from relevance.services import Services  # noqa: E402
from relevance.spelling import lexical_text, vector_text  # noqa: E402

DEFAULT_WORK_DIR = ROOT / "bench" / "results" / "work"


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "yardstick_ms": cpu_yardstick_ms(),
    }


def cpu_yardstick_ms(rounds: int = 15) -> float:
    """p50 of a fixed Python + numpy workload: how fast this (shared) machine runs right now.

    Its speed has moved by 40% within an hour; a benchmark records this at its start and
    end so that runs made at different times can be compared.
    """
    rng = np.random.default_rng(0)
    data = rng.random(200_000)
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        sum(range(200_000))
        np.sort(data)
        timings.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(timings)), 2)


def home_depot_paths(data: Path) -> dict[str, Path]:
    paths = {name: data / f"{name}.csv" for name in ("products", "queries", "judgments")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"missing benchmark files: {missing} (pass --data ../shared/data/home_depot)")
    return paths


def read_queries(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["query_id"]: row["query"] for row in csv.DictReader(handle)}


def read_judgments(path: Path) -> dict[str, dict[str, float]]:
    """query id -> product id -> gain (relevance - 1, so 0 to 2)."""
    judged: dict[str, dict[str, float]] = defaultdict(dict)
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            judged[row["query_id"]][row["product_id"]] = float(row["relevance"]) - 1.0
    return dict(judged)


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``low`` (a bad value fails before any work)."""

    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def share(text: str) -> float:
    """An argparse type: a finite number from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:  # nan fails this too
        raise argparse.ArgumentTypeError(f"{text} is not a share from 0 to 1")
    return value


share.__name__ = "share"


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    return path


def output_file(text: str) -> Path:
    """An argparse type: a file whose directory exists or can be made now, not after the run."""
    path = Path(text)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot create {path.parent}: {exc.strerror or exc}") from exc
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory")
    return path


def work_dir(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory")
    return path


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every benchmark shares: the data, the engine, the reusable work dir."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the home_depot folder")
    parser.add_argument("--engine", default="embedded", choices=["embedded", "elasticsearch", "opensearch"])
    parser.add_argument("--engine-url", default="http://127.0.0.1:9200", help="server engines only")
    parser.add_argument("--work-dir", type=work_dir, default=DEFAULT_WORK_DIR, help="index + embedding cache (reused)")
    parser.add_argument(
        "--query-precision", choices=["int8", "float32"], default=None, help="ONNX query encoder (default: settings')"
    )
    parser.add_argument(
        "--embedding-model", default=None, help="a local sentence-transformers model dir (default: settings')"
    )
    parser.add_argument(
        "--query-prompt", default=None, help="text before each query ('' for none; default: the model's)"
    )
    parser.add_argument(
        "--document-prompt", default=None, help="text before each product text ('' for none; default: the model's)"
    )
    parser.add_argument(
        "--spelling",
        choices=["on", "off"],
        default=None,
        help="add catalog spelling corrections to lexical queries (spelling_correction; default: settings')",
    )
    return parser


def retrieval_key(services: Services, texts: list[str]) -> list[Any]:
    """What cached lists or scores of these query texts depend on: the served version, the
    query vectors, and the texts each retrieval is sent (after spelling correction, so a
    change to how corrections apply is a new key too)."""
    sent = []
    for text in texts:
        corrected = services.pipeline.spelling_corrections(text)
        sent.append([lexical_text(text, corrected), vector_text(text, corrected)])
    return [services.engine.alias_target(services.settings.index_alias), services.embedder.query_vectors_id, sent]


def bench_settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "query_precision", None):
        overrides = {"embedding_query_precision": args.query_precision, **overrides}
    if getattr(args, "embedding_model", None):
        overrides = {"embedding_model": args.embedding_model, **overrides}
    if getattr(args, "spelling", None):
        overrides = {"spelling_correction": args.spelling == "on", **overrides}
    for role in ("query", "document"):
        if getattr(args, f"{role}_prompt", None) is not None:
            overrides = {f"embedding_{role}_prompt": getattr(args, f"{role}_prompt"), **overrides}
    if args.engine != "embedded":  # bulk loads of 54k products need more than the serving timeout
        overrides = {"engine_url": args.engine_url, "engine_timeout": 120.0, **overrides}
    return load_settings(data_dir=args.work_dir, engine=args.engine, **{"index_alias": "homedepot", **overrides})


def ensure_index(services: Services, catalog: Path) -> dict[str, Any] | None:
    """Index the catalog unless the alias already serves it; returns the job report when it ran."""
    if services.engine.alias_target(services.settings.index_alias) is not None:
        return None
    return services.index_catalog(catalog).as_dict()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """``gunicorn wsgi:app`` on a free loopback port, with settings passed by environment."""

    def __init__(self, env: dict[str, str], workers: int = 2, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or (DEFAULT_WORK_DIR.parent / "gunicorn.log")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{self.port}",
            "wsgi:app",
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {self.log_path}")
            try:
                if requests.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise SystemExit(f"gunicorn not ready after {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._log.close()

    def __enter__(self) -> Gunicorn:
        self.wait_ready()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {}
    array = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(array, q)), 2) for q in (50, 95, 99)} | {
        "mean": round(float(array.mean()), 2)
    }
