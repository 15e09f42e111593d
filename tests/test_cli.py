"""Command-line behaviour not covered with its module: search's option checks, explain, evaluate's reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevance.cli import main

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("arguments", "option", "message"),
    [
        (["", "--mode", "lexical"], "QUERY", "at least 1 character"),
        (["x" * 501], "QUERY", "at most 500 characters"),  # the API's bound on q
        (["chair", "--price-min", "50", "--price-max", "10"], "--price-min", "must not exceed price_max"),
        (["chair", "--category", "Furniture >"], "--category", "empty segment"),
        (["chair", "--brand", ""], "--brand", "at least 1 character"),
    ],
)
def test_search_refuses_what_the_api_refuses_in_one_line_naming_the_option(
    tmp_path: Path, arguments: list[str], option: str, message: str
) -> None:
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "search", *arguments])
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith(f"Error: Invalid value for {option}:") and message in error
    assert "pydantic" not in result.output


def test_explain_places_a_product_in_words_and_as_json(indexed_dir: Path) -> None:
    base = ["--data-dir", str(indexed_dir), "explain"]
    words = CliRunner().invoke(main, [*base, "cordless drill", "f2"])  # a sofa: no query term
    assert words.exit_code == 0, words.output
    lines = words.stdout.splitlines()
    assert lines[0].startswith("f2 is ") and "BM25 matched no query term" in lines[0]
    assert "  BM25: matched no query term" in lines and any(line.startswith("  kNN: rank ") for line in lines)
    as_json = CliRunner().invoke(main, [*base, "cordless drill", "d3", "--in-stock", "--json"])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["passes_filters"] is False and body["rank"] is None and body["product"]["product_id"] == "d3"
    assert body["summary"] == "d3 is excluded by the request's filters"
    missing = CliRunner().invoke(main, [*base, "cordless drill", "nope"])
    assert (
        missing.exit_code != 0 and "'nope' is not in the index" in missing.output and "Traceback" not in missing.output
    )
    refused = CliRunner().invoke(main, [*base, "", "d1"])
    assert refused.exit_code == 2 and "Invalid value for QUERY" in refused.output


def test_evaluate_reports_skipped_queries_writes_out_in_a_new_directory_and_b_reads_the_same_data(
    indexed_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # B's default data_dir ("var") would be here: it must not be read
    judgments = tmp_path / "judgments.csv"
    extra = "1001,d1,1\n1001,d2,1\n1002,d1,2\n1002,d2,0\n"  # one grade for all; no query text
    judgments.write_text((DATA / "judgments.csv").read_text() + extra)
    fused = tmp_path / "fused.toml"
    fused.write_text("rerank = false\n")  # no data_dir: B reads the data A reads (--data-dir)
    out = tmp_path / "new" / "dir" / "report.json"
    result = CliRunner().invoke(
        main,
        [
            "--data-dir", str(indexed_dir), "evaluate", "--judgments", str(judgments), "--queries",
            str(DATA / "queries.csv"), "--vs", str(fused), "--samples", "100", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped 2 of 14 judged queries: 1 with one grade for all judged products" in result.output
    assert "1 with no query text in" in result.output
    report = json.loads(out.read_text())
    assert report["queries"] == 12
    assert not (tmp_path / "var").exists()
