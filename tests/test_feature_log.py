"""Reading served-feature logs back (train --from-logs): a bad file is named by file and line."""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from relevance.errors import CatalogError, ModelError
from relevance.judgments import JudgmentSet
from relevance.pipeline import RerankDetail
from reranker import feature_log as feature_log_module
from reranker.feature_log import FeatureLog, LogReading, read_feature_logs
from reranker.features import FEATURE_NAMES, FEATURE_SPEC
from reranker.training import CollectOptions, collect_from_logs

GOOD = json.dumps(
    {
        "request_id": "r1",
        "query": "drill",
        "model_version": None,
        "feature_spec": FEATURE_SPEC,
        "feature_names": list(FEATURE_NAMES),
        "candidates": [{"product_id": "p1", "position": 1, "score": 0.5, "features": [None] * len(FEATURE_NAMES)}],
    }
)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"a": 1}', ":2: a feature log record lacks 'feature_spec'"),  # was KeyError: 'feature_spec'
        ("[1, 2]", ":2: not a feature log record"),
        (GOOD.replace("[null", "[1, null"), ":2: not a feature log record"),  # one feature too many
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "features-20260101-1.jsonl"
    path.write_text(f"{GOOD}\n{line}\n")
    with pytest.raises(CatalogError) as error:
        list(read_feature_logs(tmp_path))
    assert error.value.detail.startswith(str(path)) and message in error.value.detail


def test_a_directory_without_logs_is_an_error_not_an_empty_training_set(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=rf"no feature logs \(\*\.jsonl\) in {tmp_path}"):
        list(read_feature_logs(tmp_path))
    (tmp_path / "features-20260101-1.jsonl").write_text(GOOD + "\n\n")
    assert [r.query for r in read_feature_logs(tmp_path)] == ["drill"]


def test_an_unfinished_line_is_an_interrupted_write_and_is_skipped_wherever_it_is(tmp_path: Path) -> None:
    (tmp_path / "features-20260101-1.jsonl").write_text(f"{GOOD}\n{GOOD[: len(GOOD) // 2]}")
    (tmp_path / "features-20260101-2.jsonl").write_text(f"{GOOD}\n")
    assert [r.request_id for r in read_feature_logs(tmp_path)] == ["r1", "r1"]
    # A killed worker's fragment, then a record appended on the next line (a restart reusing the pid).
    (tmp_path / "features-20260101-1.jsonl").write_text(f"{GOOD[: len(GOOD) // 2]}\n{GOOD}\n")
    reading = LogReading()
    assert [r.request_id for r in read_feature_logs(tmp_path, reading)] == ["r1", "r1"]
    assert reading.fragments == 1


def _detail() -> RerankDetail:
    rows = np.zeros((2, len(FEATURE_NAMES)))
    return RerankDetail("v1", ["p1", "p2"], rows, np.array([0.5, 0.25]), {})


def test_a_record_is_written_whole_or_not_at_all_and_never_glued_to_a_fragment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feature_log = FeatureLog(tmp_path, sample=0.0)
    path = feature_log.write("r1", "drill", _detail())
    assert path is not None
    path.write_bytes(path.read_bytes() + b'{"request_id": "r-killed", "qu')  # a worker killed mid-write
    assert feature_log.write("r2", "drill", _detail()) == path
    assert [r.request_id for r in read_feature_logs(path)] == ["r1", "r2"]

    size = path.stat().st_size
    open_file = Path.open

    class DiskFills:
        def __init__(self, handle) -> None:
            self._handle = handle

        def __getattr__(self, name: str):
            return getattr(self._handle, name)

        def __enter__(self) -> DiskFills:
            return self

        def __exit__(self, *exc: object) -> None:
            self._handle.close()

        def write(self, data: bytes) -> int:
            self._handle.write(data[: len(data) // 2])
            self._handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    def opening(self: Path, mode: str = "r", *args, **kwargs):
        handle = open_file(self, mode, *args, **kwargs)
        return DiskFills(handle) if mode.startswith("a") else handle

    monkeypatch.setattr(Path, "open", opening)
    assert feature_log.write("r3", "drill", _detail()) is None, "the search goes on unlogged"
    monkeypatch.undo()
    assert path.stat().st_size == size, "the half-written record was cut back off"
    assert feature_log.write("r4", "drill", _detail()) == path
    assert [r.request_id for r in read_feature_logs(path)] == ["r1", "r2", "r4"]


def test_training_from_logs_of_another_build_says_so(tmp_path: Path) -> None:
    record = json.loads(GOOD)
    record["feature_spec"] = {**record["feature_spec"], "title_coverage": -1}
    (tmp_path / "features-20260101-1.jsonl").write_text(json.dumps(record) + "\n")
    judged = JudgmentSet({"1": {"p1": 1.0, "p2": 0.0}}, {"1": "drill"})
    with pytest.raises(
        ModelError, match=r"no usable logged request in .*: 1 were logged by a build with other features"
    ):
        collect_from_logs(tmp_path, judged, 1.0, CollectOptions())


def test_logged_values_are_read_by_their_names_not_their_positions(tmp_path: Path) -> None:
    values = [float(i) for i in range(len(FEATURE_NAMES))]
    order = list(reversed(range(len(FEATURE_NAMES))))
    record = json.loads(GOOD)
    record["feature_names"] = [FEATURE_NAMES[i] for i in order]
    record["candidates"][0]["features"] = [values[i] for i in order]
    (tmp_path / "features-20260101-1.jsonl").write_text(json.dumps(record) + "\n")
    (logged,) = read_feature_logs(tmp_path)
    assert logged.features[0].tolist() == values


def test_files_of_days_past_the_kept_ones_are_deleted_as_a_day_begins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime(2026, 3, 10, 12, tzinfo=UTC)

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return today

    monkeypatch.setattr(feature_log_module, "datetime", Clock)

    def day_file(day: str, pid: int = 7) -> Path:
        path = tmp_path / f"features-{day}-{pid}.jsonl"
        path.write_text("{}\n")
        return path

    expired, last_kept, yesterday = day_file("20260302"), day_file("20260303"), day_file("20260309", pid=8)
    others = [tmp_path / "notes.jsonl", tmp_path / "features-2026-x.jsonl"]
    for path in others:
        path.write_text("{}\n")
    (tmp_path / "features-20200101-9.jsonl").mkdir()  # not a file: left alone, and costs no record
    feature_log = FeatureLog(tmp_path, sample=0.0, keep_days=7)
    written = feature_log.write("r1", "drill", _detail())
    assert written == tmp_path / f"features-20260310-{os.getpid()}.jsonl"
    assert not expired.exists(), "8 days before today: past the 7 kept"
    assert all(p.exists() for p in (last_kept, yesterday, written, *others))

    today = datetime(2026, 3, 11, 0, 1, tzinfo=UTC)  # the same process, a day later
    assert feature_log.write("r2", "drill", _detail()) is not None
    assert not last_kept.exists() and yesterday.exists()
    one_day = FeatureLog(tmp_path, sample=0.0, keep_days=1)
    one_day.write("r3", "drill", _detail())
    assert written.exists(), "yesterday's file stays: a worker may append to it across midnight"

    day_file("20200101")
    FeatureLog(tmp_path, sample=0.0, keep_days=0).write("r4", "drill", _detail())
    assert (tmp_path / "features-20200101-7.jsonl").exists(), "0 keeps every day"
