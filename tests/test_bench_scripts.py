"""The benchmark scripts run end to end on small catalogs: the test catalog in the Home Depot
layout, and a slice of the shipped WANDS demo catalog for the catalog-fit proxy.

Their numbers on the real data are reported in bench/README.md; these tests keep the
scripts working (a pipeline change once broke every vector search they make, unseen
until the next benchmark) and check what the scripts promise: every method scored on
every eligible query, and a cross-validation that reproduces itself query for query.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def home_depot_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/data as products.csv (id, title), queries.csv and judgments.csv (relevance 1 to 3)."""
    folder = tmp_path_factory.mktemp("home_depot")
    with (
        (DATA / "catalog.jsonl").open(encoding="utf-8") as catalog,
        (folder / "products.csv").open("w", newline="", encoding="utf-8") as out,
    ):
        writer = csv.writer(out)
        writer.writerow(["product_id", "title"])
        for line in catalog:
            product = json.loads(line)
            writer.writerow([product["product_id"], product["title"]])
    (folder / "queries.csv").write_text((DATA / "queries.csv").read_text(encoding="utf-8"), encoding="utf-8")
    with (
        (DATA / "judgments.csv").open(encoding="utf-8") as judgments,
        (folder / "judgments.csv").open("w", newline="", encoding="utf-8") as out,
    ):
        writer = csv.writer(out)
        writer.writerow(["query_id", "product_id", "relevance"])
        for row in csv.DictReader(judgments):
            writer.writerow([row["query_id"], row["product_id"], 1 + min(2, int(row["grade"]))])
    return folder


def eligible_queries(folder: Path) -> int:
    grades: dict[str, set[str]] = {}
    with (folder / "judgments.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            grades.setdefault(row["query_id"], set()).add(row["relevance"])
    return sum(len(values) > 1 for values in grades.values())


def run_script(script: str, *args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "bench" / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def run_bench(script: str, data: Path, work_dir: Path, *args: str) -> dict:
    """A script that takes the Home Depot layout."""
    return run_script(script, "--data", str(data), "--work-dir", str(work_dir), *args)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-work")  # shared: the index is built once


def test_the_relevance_benchmark_scores_every_method_on_every_eligible_query(
    home_depot_layout: Path, work_dir: Path
) -> None:
    result = run_bench("relevance.py", home_depot_layout, work_dir)
    assert result["queries"] == eligible_queries(home_depot_layout) > 0
    for mode in ("judged_list", "full_retrieval"):
        assert set(result[mode]) == {"bm25", "knn", "rrf", "linear"}
        assert all(0.0 < score <= 1.0 for score in result[mode].values())
    assert "unavailable" in result["native_fusion"]["native_rrf"], "the embedded engine has no native fusion"


def test_the_ltr_benchmark_reproduces_a_run_query_for_query(
    home_depot_layout: Path, work_dir: Path, tmp_path: Path
) -> None:
    common = ("--folds", "2", "--bootstrap-samples", "200")
    per_query = tmp_path / "first.perquery.json"
    first = run_bench("ltr.py", home_depot_layout, work_dir, *common, "--per-query", str(per_query))
    assert first["queries"] == eligible_queries(home_depot_layout)
    for mode in ("judged_list", "full_retrieval"):
        assert set(first[mode]["ndcg@10"]) == {"bm25", "knn", "rrf", "linear", "ltr"}
        assert first[mode]["ltr_vs_best_baseline"]["baseline"] in first[mode]["ndcg@10"]
    again = run_bench("ltr.py", home_depot_layout, work_dir, *common, "--seeds", "7,1", "--compare-to", str(per_query))
    assert again["judged_list"]["ndcg@10"] == first["judged_list"]["ndcg@10"]
    for mode in ("judged_list", "full_retrieval"):
        assert again["ltr_vs_compared_run"][mode]["difference"] == 0.0, "same seed, same lists: same scores"
    assert list(again["seeds"]["per_seed"]) == ["7", "1"] and "summary" in again["seeds"]
    assert first["training"]["refit"] is True, "each fold refits on all its queries, as `relevance train` does"
    stopped = run_bench("ltr.py", home_depot_layout, work_dir, *common, "--no-refit")
    assert stopped["training"]["refit"] is False
    assert stopped["training"]["best_iterations"] == first["training"]["best_iterations"], "refit after stopping"


def test_the_query_encoder_benchmark_compares_both_precisions(home_depot_layout: Path, work_dir: Path) -> None:
    result = run_bench("query_encoder.py", home_depot_layout, work_dir, "--bootstrap-samples", "200")
    assert set(result["encoders"]) == {"float32", "int8"}
    assert result["cosine_int8_to_float32"]["min"] > 0.98
    assert set(result["judged_list"]) == {"knn", "rrf"}


def test_the_indexing_benchmark_reembeds_nothing_for_an_unchanged_catalog(
    home_depot_layout: Path, tmp_path: Path
) -> None:
    result = run_bench("indexing.py", home_depot_layout, tmp_path / "fresh")
    products = len((DATA / "catalog.jsonl").read_text(encoding="utf-8").splitlines())
    assert result["cold"]["products"] == result["cold"]["embedded"] == products
    assert result["unchanged_catalog"]["embedded"] == 0
    assert result["unchanged_catalog"]["embedding_cache_hits"] == products


def test_the_latency_benchmark_serves_every_request_through_gunicorn(home_depot_layout: Path, work_dir: Path) -> None:
    result = run_bench(
        "latency.py", home_depot_layout, work_dir, "--requests", "10", "--warmup", "4", "--overhead-queries", "4"
    )
    assert result["reranker"]["state"] == "active", "--rerank on serves the bundled model"
    assert [run["clients"] for run in result["runs"]] == [1, 8]
    for run in result["runs"]:
        assert run["failures"] == 0 and run["requests"] == 10
        assert set(run["stages_ms"]) == {"embed", "vector", "lexical", "fusion", "rerank", "response"}
        assert run["latency_ms"]["p50"] > 0


def test_the_catalog_fit_benchmark_scores_the_catalog_with_and_without_its_fields(tmp_path: Path) -> None:
    catalog = tmp_path / "wands.jsonl"  # a slice of the shipped demo catalog: product classes, categories
    lines = (ROOT / "data" / "sample" / "wands_products.jsonl").read_text(encoding="utf-8").splitlines()
    catalog.write_text("\n".join(lines[:400]) + "\n", encoding="utf-8")
    result = run_script("catalog_fit.py", "--catalog", str(catalog), "--work-dir", str(tmp_path / "work"))
    assert result["queries"] > 0
    assert "without product categories" in result["as_given"]["fit_check"], "the bundled model never saw categories"
    assert result["titles_only"]["fit_check"] == "fits" and result["titles_only"]["field_shares"]["category"] == 0
    for copy in ("as_given", "titles_only"):
        assert set(result[copy]["ndcg@10"]) == {"bm25", "fused", "reranked"}
        assert all(0.0 < score <= 1.0 for score in result[copy]["ndcg@10"].values())


def test_the_feature_log_benchmark_measures_what_the_api_logged(tmp_path: Path) -> None:
    catalog = tmp_path / "wands.jsonl"
    lines = (ROOT / "data" / "sample" / "wands_products.jsonl").read_text(encoding="utf-8").splitlines()
    catalog.write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")
    result = run_script(
        "feature_log_size.py", "--catalog", str(catalog), "--queries", "3", "--work-dir", str(tmp_path / "work")
    )
    assert result["requests"] == 3, "one record per query"
    assert 0 < result["candidates"]["median"] <= 200
    assert result["bytes_per_candidate"] > 100, "a record holds every candidate's feature row"
    assert result["record_bytes"]["median"] > result["bytes_per_candidate"] * result["candidates"]["median"] * 0.5


@pytest.mark.parametrize(
    ("script", "arguments", "message"),
    [
        ("ltr.py", ["--folds", "1"], "argument --folds: 1 is below 2"),
        ("ltr.py", ["--param", "num_leaves=abc"], "the value is not JSON"),
        ("ltr.py", ["--seeds", "1,x"], "--seeds: '1,x' is not comma-separated integers"),
        ("ltr.py", ["--lists", "foo"], "--lists: 'foo': use window, judged or both"),
        ("ltr.py", ["--compare-to", "missing.json"], "argument --compare-to: missing.json is not a file"),
        ("relevance.py", ["--limit", "0"], "argument --limit: 0 is below 1"),
        ("relevance.py", ["--work-dir", "README.md"], "argument --work-dir: README.md is not a directory"),
        ("query_encoder.py", ["--bootstrap-samples", "0"], "argument --bootstrap-samples: 0 is below 100"),
    ],
)
def test_a_bad_argument_is_refused_before_any_work(script: str, arguments: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--data", "tests/data", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
