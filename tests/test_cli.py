"""Command-line behaviour not covered with its module: search's option checks, explain, evaluate's reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevance.cli import main
from relevance.config import Settings

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


def _evaluate(data_dir: Path, judgments: Path, *options: str):
    return CliRunner().invoke(
        main,
        ["--data-dir", str(data_dir), "evaluate", "--judgments", str(judgments), "--queries",
         str(DATA / "queries.csv"), "--samples", "100", *options],
    )  # fmt: skip


def test_evaluate_counts_judged_products_missing_from_the_index_as_not_found_whatever_their_order(
    indexed_dir: Path, tmp_path: Path
) -> None:
    rows = ["1,not-in-the-catalog,3", "1,d1,0", "1,d2,2", "3,also-missing,2", "3,d1,0", "3,d2,1"]
    scores = []
    for name, ordered in (("given", rows), ("reversed", rows[::-1])):
        judgments = tmp_path / f"{name}.csv"
        judgments.write_text("query_id,product_id,grade\n" + "\n".join(ordered) + "\n")
        out = tmp_path / f"{name}.json"
        result = _evaluate(indexed_dir, judgments, "--out", str(out))
        assert result.exit_code == 0, result.output
        assert "system A: 2 of 4 judged products (of 2 scored queries) are not in the index 'products'" in result.output
        means = json.loads(out.read_text())["a"]["means"]
        scores.append((means["judged:ndcg@10"], means["judged:recall@10"]))
    assert scores[0] == scores[1], "the judgments file's order decides nothing"
    assert scores[0][1] == pytest.approx(0.5), "the missing relevant product counts as not found"


def test_evaluate_names_the_model_that_ranks_before_it_scores(indexed_dir: Path, tmp_path: Path) -> None:
    fused = tmp_path / "fused.toml"
    fused.write_text("rerank = false\n")
    out = tmp_path / "report.json"
    result = _evaluate(indexed_dir, DATA / "judgments.csv", "--vs", str(fused), "--out", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # The bundled model was trained on titles only; this catalog has brands and categories.
    assert report["a"]["name"] == "A: embedded, rrf fusion, fused order (model default unusable)"
    assert "system A ranks in the fused order: model default was trained without product" in result.output
    assert report["b"]["name"] == "B: embedded, rrf fusion, no model"


def test_evaluate_vs_encodes_queries_with_bs_own_embedding_settings(
    indexed_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relevance.services import Services

    built: list[Services] = []
    from_settings = Services.from_settings

    def recording(settings: Settings) -> Services:
        built.append(from_settings(settings))
        return built[-1]

    monkeypatch.setattr(Services, "from_settings", staticmethod(recording))
    same, other = tmp_path / "same.toml", tmp_path / "float32.toml"
    same.write_text("rerank = false\n")
    other.write_text('embedding_query_precision = "float32"\n')
    for b, shared in ((same, True), (other, False)):
        built.clear()
        result = _evaluate(indexed_dir, DATA / "judgments.csv", "--vs", str(b))
        assert result.exit_code == 0, result.output
        a_services, b_services = built
        assert (b_services.pipeline.embedder is a_services.embedder) is shared
        assert b_services.pipeline.embedder.query_precision == b_services.settings.embedding_query_precision


def test_evaluate_refuses_before_scoring_what_it_could_not_finish(indexed_dir: Path, tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text("query_id,product_id,grade\n1,d1,3\n1,d2,1\n")
    linear = tmp_path / "linear.toml"
    linear.write_text('fusion = "linear"\n')
    single = _evaluate(indexed_dir, one, "--vs", str(linear))
    assert single.exit_code == 1 and "needs at least 2 scored queries; 1 can be scored" in single.output
    assert "system A" not in single.output, "refused before any query ran"
    unwritable = _evaluate(indexed_dir, DATA / "judgments.csv", "--out", "/proc/report.json")
    assert unwritable.exit_code == 2 and "cannot write in /proc" in unwritable.output
    assert "system A" not in unwritable.output


def test_train_says_when_the_held_out_share_leaves_nothing_to_train_on(indexed_dir: Path, tmp_path: Path) -> None:
    from reranker.training import split_queries

    rows = [line for line in (DATA / "judgments.csv").read_text().splitlines()[1:]]
    held_out = {qid for qid in {row.split(",")[0] for row in rows} if split_queries([qid], 0.9)[1]}
    judgments = tmp_path / "held_out.csv"
    judgments.write_text("query_id,product_id,grade\n" + "\n".join(r for r in rows if r.split(",")[0] in held_out))
    result = CliRunner().invoke(
        main,
        ["--data-dir", str(tmp_path / "data"), "train", "--judgments", str(judgments), "--queries",
         str(DATA / "queries.csv"), "--valid-share", "0.9"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"all {len(held_out)} queries with a text fell in the held-out share 0.9" in result.output


def test_rank_with_candidates_warns_of_ids_the_index_does_not_hold(indexed_dir: Path, tmp_path: Path) -> None:
    candidates = tmp_path / "candidates.csv"
    candidates.write_text("query_id,product_id\n1,d1\n1,gone-1\n1,d2\n2,gone-2\n")
    run = tmp_path / "run.txt"
    result = CliRunner().invoke(
        main,
        ["--data-dir", str(indexed_dir), "rank", "--queries", str(DATA / "queries.csv"), "--candidates",
         str(candidates), "--out", str(run)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: 2 of 4 candidate ids are not in the index 'products'" in result.output
    first = [line.split()[2] for line in run.read_text().splitlines() if line.startswith("1 ")]
    assert first[-1] == "gone-1" and set(first) == {"d1", "d2", "gone-1"}
