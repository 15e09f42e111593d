"""Served-feature logs: exactly the rows the reranker scored, for training without recomputation.

One JSON object per line, one file per process and day
(``<data_dir>/feature_logs/features-YYYYMMDD-<pid>.jsonl``), so gunicorn workers never
interleave writes; files of days more than ``keep_days`` before today are deleted as a
process logs its first request of a day (about 0.5 KB per candidate, 104 KB for a full
200-candidate window, bench/feature_log_size.py: a log with no end fills the disk).
Floats are written with Python's shortest round-trip repr and NaN (a missing feature)
as null, so reading a row back gives the same float64 values.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from relevance.errors import CatalogError
from relevance.pipeline import RerankDetail
from reranker.features import FEATURE_NAMES, FEATURE_SPEC

log = logging.getLogger(__name__)

LOG_FILE = re.compile(r"features-(\d{8})-\d+\.jsonl")


@dataclass(frozen=True)
class LoggedRequest:
    request_id: str
    query: str
    model_version: str | None
    product_ids: list[str]  # in served order
    features: np.ndarray
    scores: np.ndarray | None


class FeatureLog:
    def __init__(self, directory: Path, sample: float, seed: int | None = None, keep_days: int = 0) -> None:
        """``keep_days``: days of files kept before today's (0: all)."""
        self.directory = directory
        self.sample = sample
        self.keep_days = keep_days
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._failures: set[str] = set()
        self._pruned_on: date | None = None

    def wanted(self, requested: bool) -> bool:
        """Log this request? Always when asked for, else for the configured share."""
        return requested or (self.sample > 0 and self._random.random() < self.sample)

    def write(self, request_id: str, query: str, detail: RerankDetail) -> Path | None:
        """Append the request's scored rows; None when the log cannot be written (said once per problem)."""
        now = datetime.now(UTC)
        record: dict[str, Any] = {
            "request_id": request_id,
            "logged_at": now.isoformat(),
            "query": query,
            "model_version": detail.model_version,
            "judged_categories_of": detail.categories_of,  # whose table filled that column, reranked or not
            "feature_spec": FEATURE_SPEC,
            "feature_names": list(FEATURE_NAMES),
            "candidates": [
                {
                    "product_id": pid,
                    "position": position,
                    "score": None if detail.scores is None else float(detail.scores[position - 1]),
                    "features": [None if np.isnan(v) else float(v) for v in detail.features[position - 1]],
                }
                for position, pid in enumerate(detail.candidate_ids, start=1)
            ],
        }
        path = self.directory / f"features-{now.strftime('%Y%m%d')}-{os.getpid()}.jsonl"
        line = json.dumps(record, allow_nan=False) + "\n"
        with self._lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                if self._pruned_on != now.date():
                    self._prune(now.date())
                _append_whole(path, line)
            except OSError as exc:  # a full disk costs the log, never the shopper's search
                self._warn_once(f"cannot write the feature log {path} ({_said(exc)}); searches go on unlogged")
                return None
        return path

    def _prune(self, today: date) -> None:
        """Delete the files of days before the last ``keep_days`` (every worker may; the first wins).

        Yesterday's file is always kept (``keep_days`` >= 1): a worker may still be appending
        to it across midnight. A file that cannot be deleted is said once and costs no record.
        """
        self._pruned_on = today
        if not self.keep_days:
            return
        oldest_kept = (today - timedelta(days=self.keep_days)).strftime("%Y%m%d")
        try:
            paths = list(self.directory.iterdir())
        except OSError as exc:
            self._warn_once(f"cannot list the feature logs in {self.directory} ({_said(exc)})")
            return
        for path in paths:
            match = LOG_FILE.fullmatch(path.name)
            if not match or match.group(1) >= oldest_kept:
                continue
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                self._warn_once(f"cannot delete the old feature log {path} ({_said(exc)})")
            else:
                log.info("deleted the feature log %s (feature_log_keep_days=%d)", path, self.keep_days)

    def _warn_once(self, problem: str) -> None:
        if problem not in self._failures:
            self._failures.add(problem)
            log.warning("%s", problem)


def _said(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def _append_whole(path: Path, line: str) -> None:
    """Append one record so that it is whole or absent: a write that fails (a full disk) is
    cut back off, and a record starts on a line of its own even after a fragment that a
    killed process left (a restarted container's workers reuse its pids, so its files)."""
    with path.open("a+b") as handle:  # reads from anywhere; writes always append
        start = handle.seek(0, os.SEEK_END)
        data = line.encode("utf-8")
        if start:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":
                data = b"\n" + data
        try:
            handle.write(data)
            handle.flush()
        except OSError:
            handle.truncate(start)
            raise


@dataclass
class LogReading:
    """What reading logs left out, for the caller to report."""

    other_features: int = 0  # requests logged by a build with other features
    fragments: int = 0  # lines an interrupted write left unfinished


def read_feature_logs(source: Path, reading: LogReading | None = None) -> Iterator[LoggedRequest]:
    """Every logged request under ``source`` (a file or a directory of them), in file order.

    A line that is not JSON is a fragment an interrupted write left (a worker killed
    mid-write, a full disk in older builds): skipped with a warning naming it. Requests
    logged by a build with other features are skipped too; ``reading`` counts both.

    Raises:
        CatalogError: a directory without ``*.jsonl`` files, or a JSON line that is not a
            logged request (naming the file and line): not a feature log at all.
    """
    reading = reading if reading is not None else LogReading()
    paths = sorted(source.glob("*.jsonl")) if source.is_dir() else [source]
    if not paths:
        raise CatalogError(f"no feature logs (*.jsonl) in {source}", field="feature_logs")
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            try:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        logged = _logged_request(line, f"{path}:{number}")
                    except _Fragment:
                        log.warning("%s:%d: skipping an unfinished line (an interrupted write)", path, number)
                        reading.fragments += 1
                        continue
                    if logged is None:
                        reading.other_features += 1
                    else:
                        yield logged
            except UnicodeDecodeError as exc:
                raise CatalogError(f"{path}: not UTF-8 text ({exc.reason})", field="feature_logs") from exc
    if reading.other_features:
        log.warning(
            "skipped %d logged requests of a build with other features (feature_spec differs from this build's)",
            reading.other_features,
        )


class _Fragment(Exception):
    """A line that is not JSON: what an interrupted write leaves."""


def _logged_request(line: str, where: str) -> LoggedRequest | None:
    """One log line; None when it was logged by a build with other features (not usable by this one)."""
    try:
        record = json.loads(line)
        if record["feature_spec"] != FEATURE_SPEC:
            return None
        candidates = record["candidates"]
        features = np.array(
            [[np.nan if v is None else v for v in c["features"]] for c in candidates], dtype=np.float64
        ).reshape(len(candidates), len(FEATURE_NAMES))
        # The spec (a dict) says which features; the names say in which order the values are.
        columns = {name: i for i, name in enumerate(record["feature_names"])}
        features = features[:, [columns[name] for name in FEATURE_NAMES]]
        scores = [c["score"] for c in candidates]
        return LoggedRequest(
            str(record["request_id"]),
            str(record["query"]),
            record["model_version"],
            [str(c["product_id"]) for c in candidates],
            features,
            None if any(s is None for s in scores) else np.asarray(scores, dtype=np.float64),
        )
    except json.JSONDecodeError as exc:
        raise _Fragment(where) from exc
    except KeyError as exc:
        raise CatalogError(f"{where}: a feature log record lacks {exc.args[0]!r}", field="feature_logs") from exc
    except (TypeError, ValueError) as exc:  # not an object, or features of the wrong shape or type
        raise CatalogError(f"{where}: not a feature log record ({exc})", field="feature_logs") from exc
