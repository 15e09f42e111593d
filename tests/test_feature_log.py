"""Reading served-feature logs back (train --from-logs): a bad file is named by file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relevance.errors import CatalogError
from reranker.feature_log import read_feature_logs
from reranker.features import FEATURE_NAMES, FEATURE_SPEC

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
        ("hello", ":2: not JSON"),  # was a bare "Expecting value: line 1 column 1 (char 0)"
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


def test_an_unfinished_last_line_is_an_interrupted_write_and_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "features-20260101-1.jsonl").write_text(f"{GOOD}\n{GOOD[: len(GOOD) // 2]}")
    (tmp_path / "features-20260101-2.jsonl").write_text(f"{GOOD}\n")
    assert [r.request_id for r in read_feature_logs(tmp_path)] == ["r1", "r1"]
    (tmp_path / "features-20260101-1.jsonl").write_text(f"{GOOD[: len(GOOD) // 2]}\n{GOOD}\n")
    with pytest.raises(CatalogError, match=":1: not JSON"):  # a bad line with lines after it is no crash
        list(read_feature_logs(tmp_path))


def test_logged_values_are_read_by_their_names_not_their_positions(tmp_path: Path) -> None:
    values = [float(i) for i in range(len(FEATURE_NAMES))]
    order = list(reversed(range(len(FEATURE_NAMES))))
    record = json.loads(GOOD)
    record["feature_names"] = [FEATURE_NAMES[i] for i in order]
    record["candidates"][0]["features"] = [values[i] for i in order]
    (tmp_path / "features-20260101-1.jsonl").write_text(json.dumps(record) + "\n")
    (logged,) = read_feature_logs(tmp_path)
    assert logged.features[0].tolist() == values
