"""The learned reranker end to end on the fixture catalog: features, training, serving,
explanations, fallbacks, hot activation and served-feature logs."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rapidfuzz import fuzz

import reranker.registry as registry_module
from indexer.catalog import load_catalog
from indexer.product import Product
from relevance.api import create_app
from relevance.embedder import Embedder
from relevance.errors import ModelError, NotFoundError
from relevance.filters import SearchFilters
from relevance.judgments import JudgmentSet, read_judgments
from relevance.services import Services
from reranker.catalog_stats import STATS_VERSION, CatalogStats, stats_path, texts_path
from reranker.feature_log import read_feature_logs
from reranker.features import FEATURE_NAMES, FEATURE_SPEC, Candidate, compute_features
from reranker.judged_categories import CATEGORIES_FILE, CategoryLearner, JudgedCategories, fold_of
from reranker.model import RankerModel, TrainingSet, refit_rounds
from reranker.product_texts import OPTIONAL_TEXT_FIELDS
from reranker.registry import ModelRegistry
from reranker.text import analyse, category_level
from reranker.training import (
    CollectOptions,
    candidate_lists,
    category_learner,
    collect_from_logs,
    label_scale,
    registry_meta,
    split_queries,
    train_and_save,
    training_set,
)
from tests.conftest import CATALOG, DATA, make_services, titles_only_catalog

JUDGMENTS, QUERIES = DATA / "judgments.csv", DATA / "queries.csv"
TINY = {"min_data_in_leaf": 2, "min_sum_hessian_in_leaf": 1e-6, "num_leaves": 7, "num_boost_round": 30}


@pytest.fixture(scope="module")
def ltr_services(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Services:
    services = make_services(tmp_path_factory.mktemp("ltr"), embedder)
    services.index_catalog(CATALOG)
    return services


@pytest.fixture(scope="module")
def trained(ltr_services: Services) -> str:
    judged = read_judgments(JUDGMENTS, queries_path=QUERIES)
    options = CollectOptions()
    categories = category_learner(ltr_services.pipeline, judged, judged.scorable())
    lists = candidate_lists(ltr_services.pipeline, judged, judged.scorable(), options.lists, categories=categories)
    data = training_set(lists, judged, label_scale(judged), options)
    version, _ = train_and_save(
        data,
        TrainingSet.empty(),
        ltr_services.pipeline.reranker.registry,
        scale=1.0,
        options=options,
        params=TINY,
        judged_categories=categories.table(),
    )
    return version


def resave(registry: ModelRegistry, version: str, meta: dict | None = None, source: ModelRegistry | None = None) -> str:
    """A new version holding ``version``'s files (of ``source``, by default ``registry``), and
    ``meta`` instead of its metadata."""
    directory = (source or registry).model_dir(version)
    return registry.save(
        (directory / "model.txt").read_text(),
        meta or json.loads((directory / "meta.json").read_text()),
        {CATEGORIES_FILE: (directory / CATEGORIES_FILE).read_text()},
    )


@pytest.fixture
def active(ltr_services: Services, trained: str) -> Iterator[str]:
    registry = ltr_services.pipeline.reranker.registry
    registry.activate(trained)
    yield trained
    registry.deactivate()


def features_by_name(rows: np.ndarray, row: int) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, rows[row], strict=True))


# ------------------------------------------------------------------- features
def test_units_and_numbers_are_normalised() -> None:
    assert analyse('1/2" pvc').quantities == analyse("0.5 inch pvc").quantities == {(0.5, "in")}
    assert analyse("60-gallon heater").quantities == analyse("60 gal. heater").quantities == {(60.0, "gal")}
    assert analyse("6-1/2 in. blade").quantities == {(6.5, "in")}
    assert analyse("10 ft. x 12 ft.").quantities == {(10.0, "ft"), (12.0, "ft")}


def test_text_is_folded_as_the_engines_fold_it() -> None:
    """Accents, case and compatibility forms neither split words nor hide numbers (``[a-z]+``
    after ``lower()`` read "décor" as "d" and "cor" and dropped "½")."""
    assert analyse("Décor Straße").words == analyse("DECOR strasse").words == ("decor", "strasse")
    assert analyse("ｐｖｃ ｐｉｐｅ").words == ("pvc", "pipe")
    assert analyse("2½ gal. Bucket").quantities == analyse("2-1/2 gallon bucket").quantities == {(2.5, "gal")}
    assert analyse("¾ in. Valve").quantities == {(0.75, "in")} and analyse("¾ in. Valve").words == ("valve",)
    assert analyse("Diamond™ Seal®").words == ("diamond", "seal"), "a symbol separates words, as tokenizers take it"
    assert analyse("Print 4” x 6.75”").quantities == analyse('print 4" x 6.75"').quantities == {(4, "in"), (6.75, "in")}
    assert analyse("8′ Cord").quantities == {(8.0, "ft")}


def test_accented_titles_match_queries_typed_with_or_without_their_accents() -> None:
    titles = ["Rustic Décor Wall Shelf", "Rustic Wall Shelf", "Crème Brûlée Torch", "2½ gal. Bucket"]
    candidates = [Candidate(Product(product_id=f"p{i}", title=t), 1.0, i) for i, t in enumerate(titles, start=1)]
    for query in ("rustic decor shelf", "Rustic DÉCOR shelf"):
        decor, plain, *_ = (features_by_name(compute_features(query, candidates, CatalogStats()), i) for i in (0, 1))
        assert decor["title_coverage"] == 1.0 and plain["title_coverage"] == pytest.approx(2 / 3)
        assert decor["fuzzy_term_best"] == 1.0 and decor["bigram_coverage"] == 0.5
    rows = compute_features("creme brulee torch", candidates, CatalogStats())
    assert rows[:, FEATURE_NAMES.index("exact_phrase")].tolist() == [0.0, 0.0, 1.0, 0.0]
    bucket = features_by_name(compute_features("2 1/2 gallon bucket", candidates, CatalogStats()), 3)
    assert bucket["quantity_match"] == 1.0 and bucket["title_coverage"] == 1.0


def test_statistics_of_an_older_text_analysis_serve_and_the_log_asks_for_a_reindex(
    tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    services = make_services(tmp_path, embedder)
    version = services.index_catalog(CATALOG).version
    path = stats_path(services.settings.data_dir, version)
    older = {**json.loads(path.read_text(encoding="utf-8")), "version": STATS_VERSION - 1}
    path.write_text(json.dumps(older), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="reranker.serving"):
        served = services.pipeline.on_index(version).catalog_stats.current()
    assert served.version == STATS_VERSION - 1 and len(served.texts) == served.documents > 0
    assert f"older text analysis (version {STATS_VERSION - 1}, this build {STATS_VERSION})" in caplog.text
    assert "re-index" in caplog.text


def test_feature_columns_mean_what_their_names_say(ltr_services: Services) -> None:
    products = ltr_services.engine.get("products", ["k3", "k4", "d1"])
    candidates = [
        Candidate(products["k3"], 0.03, 1, lexical_score=9.0, lexical_rank=1, vector_rank=None, cosine=0.7),
        Candidate(products["k4"], 0.02, 2, lexical_score=None, lexical_rank=None, vector_rank=1, cosine=0.6),
        Candidate(products["d1"], 0.01, 3),
    ]
    rows = compute_features("1/2 inch pvc pipe", candidates, CatalogStats())
    pvc, elbow, drill = (features_by_name(rows, i) for i in range(3))
    assert rows.shape == (3, len(FEATURE_SPEC))
    assert pvc["quantity_match"] == 1.0 and pvc["number_match"] == 1.0 and pvc["title_coverage"] == 1.0
    assert elbow["quantity_match"] == 1.0 and elbow["title_coverage"] == 0.5
    assert drill["quantity_match"] == 0.0 and drill["title_coverage"] == 0.0
    assert pvc["lexical_score"] == 9.0 and math.isnan(elbow["lexical_score"]) and math.isnan(drill["vector_cosine"])
    assert pvc["fused_rank"] == 1.0 and drill["fused_rank"] == 3.0
    assert math.isnan(pvc["rating"]) and math.isnan(pvc["description_coverage"]), "absent fields are missing, not 0"
    assert pvc["brand_coverage"] == 0.5 and pvc["brand_in_query"] == 0.0  # brand "Charlotte Pipe"
    rows = compute_features("dewalt cordless drill driver", candidates[2:], CatalogStats())
    drill = features_by_name(rows, 0)
    assert drill["brand_in_query"] == 1.0 and drill["head_term_match"] == 1.0
    assert math.isnan(drill["quantity_match"]), "no number in the query: not applicable"


def test_list_relative_features_compare_each_candidate_with_the_best_of_its_list(ltr_services: Services) -> None:
    products = ltr_services.engine.get("products", ["k3", "k4", "d1"])
    candidates = [
        Candidate(products["k3"], 0.03, 1, lexical_score=9.0, lexical_rank=1, vector_rank=None, cosine=0.7),
        Candidate(products["k4"], 0.02, 2, lexical_score=4.5, lexical_rank=2, vector_rank=1, cosine=0.6),
        Candidate(products["d1"], 0.01, 3),
    ]
    pvc, elbow, drill = (
        features_by_name(compute_features("1/2 inch pvc pipe", candidates, CatalogStats()), i) for i in range(3)
    )
    assert (pvc["lexical_ratio"], elbow["lexical_ratio"]) == (1.0, 0.5) and math.isnan(drill["lexical_ratio"])
    assert pvc["cosine_gap"] == 0.0 and elbow["cosine_gap"] == pytest.approx(0.1) and math.isnan(drill["cosine_gap"])
    assert pvc["cosine_z"] == pytest.approx(1.0) and elbow["cosine_z"] == pytest.approx(-1.0)
    assert math.isnan(drill["cosine_z"]), "a candidate without a cosine is not compared"
    assert (pvc["title_coverage_gap"], elbow["title_coverage_gap"], drill["title_coverage_gap"]) == (0.0, 0.5, 1.0)
    assert {pvc["list_size"], elbow["list_size"], drill["list_size"]} == {3.0}
    unscored = [candidate._replace(lexical_score=None, lexical_rank=None) for candidate in candidates]
    rows = compute_features("1/2 inch pvc pipe", unscored, CatalogStats())
    assert np.isnan(rows[:, FEATURE_NAMES.index("lexical_ratio")]).all(), (
        "no BM25 score in the list: nothing to compare"
    )


def test_per_field_bm25_weighs_rare_terms_and_short_fields_and_is_missing_without_the_field() -> None:
    filler = "sturdy steel frame with a powder coated finish for everyday use in the garage"
    catalog = [
        Product(product_id="short", title="Shelf A", description="walnut veneer"),
        Product(product_id="long", title="Shelf B", description=f"walnut veneer {filler}"),
        Product(product_id="common", title="Shelf C", description="steel shelf"),
        Product(product_id="none", title="Shelf D"),
        *(Product(product_id=f"f{i}", title=f"Rack {i}", description=f"{filler} {i}") for i in range(20)),
    ]
    stats = CatalogStats.build(catalog)
    candidates = [Candidate(p, 1.0, i) for i, p in enumerate(catalog[:4], start=1)]
    column = FEATURE_NAMES.index("description_bm25")
    walnut, steel = (compute_features(q, candidates, stats)[:, column] for q in ("walnut", "steel"))
    assert walnut[0] > walnut[1] > 0.0, "the same match counts more in a shorter description"
    assert walnut[2] == 0.0 and math.isnan(walnut[3]), "no match is 0; no description is missing"
    assert walnut[0] > steel[2] > 0.0, "a term most descriptions hold (steel) weighs less than a rare one (walnut)"
    terms = stats.field_terms("description")
    assert terms.documents == 23 and terms.idf(["zzz"]).item() == pytest.approx(math.log(1 + 23.5 / 0.5))
    branded = [Candidate(Product(product_id="b", title="Hammer", brand="Estwing", category="Tools > Hand Tools"), 1, 1)]
    row = features_by_name(compute_features("estwing hand hammer", branded, stats), 0)
    assert row["brand_bm25"] > 0.0 and row["category_bm25"] > 0.0 and math.isnan(row["description_bm25"])


def test_the_index_time_text_table_gives_the_features_serving_would_compute(ltr_services: Services) -> None:
    """Products the job analysed (read from disk) and products analysed at serving time score the same."""
    pipeline = ltr_services.pipeline
    stored = pipeline.catalog_stats.current()
    assert len(stored.texts) == len(load_catalog(CATALOG, Path("/dev/null")).products)
    on_the_fly = CatalogStats(**{k: getattr(stored, k) for k in ("documents", "document_frequency", "words")})
    on_the_fly.term_categories, on_the_fly.brand_words = stored.term_categories, stored.brand_words
    # Collection numbers (field document frequencies) are the catalog's; what differs is each product's analysis.
    on_the_fly._field_terms.update({field: stored.field_terms(field) for field in OPTIONAL_TEXT_FIELDS})
    assert len(on_the_fly.texts) == 0
    products = ltr_services.engine.get("products", ["k3", "k4", "d1", "d2"])
    candidates = [Candidate(p, 1.0 / i, i) for i, p in enumerate(products.values(), start=1)]
    for query in ("1/2 inch pvc pipe", "dewalt cordless drill driver", "dewlat drll", "60 gal water heater"):
        from_table = compute_features(query, candidates, stored)
        analysed_now = compute_features(query, candidates, on_the_fly)
        np.testing.assert_allclose(from_table, analysed_now, rtol=1e-12, equal_nan=True)
        assert not np.isnan(from_table[:, FEATURE_NAMES.index("title_coverage")]).any()


def test_exact_phrase_reads_titles_with_their_whitespace_collapsed() -> None:
    titles = [
        "Big  Red\tCordless Drill",
        "Red Cordless Drill",
        "Cordless Red Drill",
        "Redcordless drill",
        "Tool Bag, Red",  # with the next title, "red cordless drill" would span two titles
        "Cordless Drill Kit",
        " RED\n cordless  DRILL ",
        "İznik Tile",  # lowering makes "İ" two characters: the titles after it must still line up
        "Red Cordless Drill Set",
    ]
    candidates = [Candidate(Product(product_id=f"p{i}", title=t), 1.0, i) for i, t in enumerate(titles, start=1)]
    rows = compute_features("  Red cordless   drill", candidates, CatalogStats())
    assert rows[:, FEATURE_NAMES.index("exact_phrase")].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "titles, expected",
    [
        # Single spaces and ASCII only: the literal search.
        (
            ["Red Cordless Drill", "Tool Bag, Red", "Cordless Drill Kit", "red cordless drill red cordless drill"],
            [1, 0, 0, 1],
        ),
        # A no-break space or an ASCII separator is whitespace to the regex, so to the feature.
        (["Red\u00a0Cordless Drill", "Red Cordless Drill"], [1, 1]),
        (["Red\x1fCordless Drill", "Red Cordless Drill"], [1, 1]),
        (["Red cordless\x0bdrill", "Redcordless Drill"], [1, 0]),
        # A title may hold the separator the joined search uses: every title still reads as itself
        # (it shifted every later title's answer, and the last one's ran past the end of the list).
        (["Claw Hammer\x00Steel", "Red Cordless Drill", "Cordless Drill", "red cordless drill"], [0, 1, 0, 1]),
        (["Red Cordless\x00Drill", "Red Cordless Drill"], [0, 1]),
    ],
)
def test_exact_phrase_is_the_same_whichever_search_finds_it(titles: list[str], expected: list[int]) -> None:
    candidates = [Candidate(Product(product_id=f"p{i}", title=t), 1.0, i) for i, t in enumerate(titles, start=1)]
    rows = compute_features("red cordless drill", candidates, CatalogStats())
    assert rows[:, FEATURE_NAMES.index("exact_phrase")].tolist() == expected


def test_fuzzy_term_match_is_each_query_words_best_ratio_against_the_title_words() -> None:
    titles = ["DEWALT 20V Cordless Drill", "Makita Impact Driver", "Drill", "10 in."]
    candidates = [Candidate(Product(product_id=f"p{i}", title=t), 1.0, i) for i, t in enumerate(titles, start=1)]
    query_words = ["dewlat", "drll"]
    rows = compute_features("dewlat drll", candidates, CatalogStats())
    for row, title in zip(rows, titles, strict=True):
        words = analyse(title).words
        expected = np.mean([max(fuzz.ratio(q, w) for w in words) / 100 for q in query_words]) if words else 0.0
        assert row[FEATURE_NAMES.index("fuzzy_term_best")] == pytest.approx(expected, abs=1e-12)
    best = rows[:, FEATURE_NAMES.index("fuzzy_term_best")]
    assert best[0] > best[2] > best[1] and best[3] == 0.0, "misspelt brand and product type match the DEWALT drill"


def test_a_product_whose_text_changed_after_the_build_is_analysed_anew(ltr_services: Services) -> None:
    stats = ltr_services.pipeline.catalog_stats.current()
    product = ltr_services.engine.get("products", ["d1"])["d1"]
    renamed = product.model_copy(update={"title": "Charlotte Pipe 1/2 in. PVC Pipe"})
    rows = compute_features("1/2 inch pvc pipe", [Candidate(product, 1.0, 1), Candidate(renamed, 0.5, 2)], stats)
    before, after = features_by_name(rows, 0), features_by_name(rows, 1)
    assert before["title_coverage"] == 0.0 and before["quantity_match"] == 0.0
    assert after["title_coverage"] == 1.0 and after["quantity_match"] == 1.0


def test_a_version_checked_before_its_swap_is_scored_with_its_own_statistics(
    tmp_path: Path, embedder: Embedder
) -> None:
    services = make_services(tmp_path, embedder)
    full = services.index_catalog(CATALOG).version
    lines = CATALOG.read_text(encoding="utf-8").splitlines()[:5]
    (tmp_path / "smaller.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    smaller = services.index_catalog(tmp_path / "smaller.jsonl").version
    assert services.engine.alias_target(services.settings.index_alias) == smaller
    assert services.pipeline.catalog_stats.current().documents == 5
    full_stats = services.pipeline.on_index(full).catalog_stats.current()
    assert full_stats.documents == len(load_catalog(CATALOG, Path("/dev/null")).products)
    assert len(full_stats.texts) == full_stats.documents


# ---------------------------------------------------------- judged categories
def agreement(query: str, product: Product, table: JudgedCategories) -> float:
    """judged_category_agreement spelt out: mean over the query's known stems of P(product's category | stem)."""
    known = [table.term_categories[s] for s in dict.fromkeys(analyse(query).stems) if s in table.term_categories]
    category = category_level(product.category)
    if not known or not category:
        return math.nan
    return float(np.mean([distribution.get(category, 0.0) for distribution in known]))


def test_judged_categories_weigh_each_querys_gains_and_leave_its_own_fold_out() -> None:
    first = "q0"
    second = next(f"q{i}" for i in range(1, 100) if fold_of(f"q{i}") != fold_of(first))
    judged = JudgmentSet(
        {first: {"p1": 2.0, "p2": 1.0, "p3": 0.0, "uncategorised": 2.0}, second: {"p1": 1.0}},
        {first: "cordless drill", second: "drill bits"},
    )
    category_of = {"p1": "tools > drills", "p2": "tools > bits", "p3": "garden > hoses"}.get
    learner = CategoryLearner(judged, [first, second], category_of)
    cordless, drill = analyse("cordless drill").stems
    full = learner.table()
    assert full.queries == 2
    # gain-weighted within a query (2:1), each query weighing 1; a product graded 0 says nothing
    assert full.term_categories[cordless] == pytest.approx({"tools > drills": 2 / 3, "tools > bits": 1 / 3}, abs=1e-6)
    assert full.term_categories[drill] == pytest.approx({"tools > drills": 5 / 6, "tools > bits": 1 / 6}, abs=1e-6)
    held_out = learner.out_of_fold(first)
    assert cordless not in held_out.term_categories, "only the first query used it"
    assert held_out.term_categories[drill] == pytest.approx({"tools > drills": 1.0})
    assert held_out.queries == 1
    assert JudgedCategories.from_json(full.to_json()) == full


def test_judged_category_agreement_reads_the_table_it_is_given(ltr_services: Services) -> None:
    stats = ltr_services.pipeline.catalog_stats.current()
    products = ltr_services.engine.get("products", ["d1", "b1", "h1"])
    uncategorised = products["d1"].model_copy(update={"product_id": "d1-copy", "category": None})
    candidates = [Candidate(p, 0.1, i) for i, p in enumerate([*products.values(), uncategorised], start=1)]
    (drill,) = analyse("drill").stems
    table = JudgedCategories({drill: {"tools > power tools": 0.75, "tools > accessories": 0.25}}, 3)
    column = FEATURE_NAMES.index("judged_category_agreement")
    values = compute_features("cordless drill", candidates, stats, table)[:, column]
    assert values[:3].tolist() == [0.75, 0.25, 0.0]  # drill, drill bits, hammer
    assert math.isnan(values[3]), "no category: missing"
    assert np.isnan(compute_features("cordless drill", candidates, stats)[:, column]).all(), "no table: missing"
    assert np.isnan(compute_features("claw hammer", candidates, stats, table)[:, column]).all(), "no known term"


def test_training_reads_each_querys_out_of_fold_table_and_serving_the_models_own(
    ltr_services: Services, trained: str
) -> None:
    judged = read_judgments(JUDGMENTS, queries_path=QUERIES)
    learner = category_learner(ltr_services.pipeline, judged, judged.scorable())
    registry = ltr_services.pipeline.reranker.registry
    shipped = JudgedCategories.from_json((registry.model_dir(trained) / CATEGORIES_FILE).read_text())
    assert shipped == learner.table() and shipped.queries == len(judged.scorable())
    assert registry_meta(registry, trained)["training"]["judged_categories"]["queries"] == shipped.queries
    catalog = {p.product_id: p for p in load_catalog(CATALOG, Path("/dev/null")).products}
    column = FEATURE_NAMES.index("judged_category_agreement")
    differs = 0
    for item in candidate_lists(ltr_services.pipeline, judged, judged.scorable(), ["judged"], categories=learner):
        text = judged.queries[item.query_id]
        held_out = [agreement(text, catalog[pid], learner.out_of_fold(item.query_id)) for pid in item.product_ids]
        np.testing.assert_array_equal(item.features[:, column], held_out)
        differs += not np.array_equal(held_out, [agreement(text, catalog[p], shipped) for p in item.product_ids])
    assert differs >= 3, "the held-out tables must matter, or this test proves nothing"

    client = create_app(services=ltr_services).test_client()
    registry.activate(trained)
    try:
        body = client.get("/search?q=cordless+drill&explain=true&size=10").get_json()
    finally:
        registry.deactivate()
    assert body["reranked_by"] == trained
    for result in body["results"]:
        served = result["explain"]["learned"]["features"]["judged_category_agreement"]
        assert served == pytest.approx(agreement("cordless drill", catalog[result["product_id"]], shipped))


def test_a_refit_model_learns_from_the_held_out_queries_for_scaled_rounds(ltr_services: Services) -> None:
    import lightgbm as lgb

    judged = read_judgments(JUDGMENTS, queries_path=QUERIES)
    fit_queries, valid_queries = split_queries(judged.scorable(), 0.3)
    assert fit_queries and valid_queries
    options = CollectOptions()
    lists = candidate_lists(ltr_services.pipeline, judged, judged.scorable(), options.lists)
    fit = training_set([i for i in lists if i.query_id in fit_queries], judged, 1.0, options)
    valid = training_set([i for i in lists if i.query_id in valid_queries], judged, 1.0, options)
    registry = ltr_services.pipeline.reranker.registry
    boosters, metas = {}, {}
    for refit in (True, False):
        version, metas[refit] = train_and_save(
            fit, valid, registry, scale=1.0, options=options, params=TINY, refit=refit
        )
        boosters[refit] = lgb.Booster(model_str=(registry.model_dir(version) / "model.txt").read_text())

    stopped = metas[False]["validation"]["best_iteration"]
    assert metas[True]["validation"] == metas[False]["validation"], "measured on held-out queries, before the refit"
    assert boosters[False].num_trees() == stopped and metas[False]["refit"] is None
    assert metas[False]["training"]["queries"] == len(fit_queries)
    share = len(valid.groups) / (len(fit.groups) + len(valid.groups))
    assert boosters[True].num_trees() == metas[True]["refit"]["rounds"] == refit_rounds(stopped, share)
    assert metas[True]["refit"]["early_stopped_rounds"] == stopped
    assert metas[True]["training"]["queries"] == len(fit_queries) + len(valid_queries)
    assert metas[True]["training"]["data_sha256"] == fit.joined(valid).fingerprint()
    refit_scores, stopped_scores = (boosters[r].predict(valid.features) for r in (True, False))
    assert not np.allclose(refit_scores, stopped_scores), "the refit model learned from the held-out queries"


def test_refit_rounds_grow_with_the_held_out_share() -> None:
    assert refit_rounds(90, 0.1) == 100 and refit_rounds(100, 0.0) == 100 and refit_rounds(0, 0.5) == 1


# ------------------------------------------------------------------- serving
@pytest.mark.parametrize("url", ["page=50&size=10", "brand=NoSuchBrand", "category=Nope"])
def test_explain_on_an_empty_page_is_an_empty_page(ltr_services: Services, active: str, url: str) -> None:
    # LightGBM's pred_contrib divided by zero on no rows: a 500 where rerank=false gave a 200
    response = create_app(services=ltr_services).test_client().get(f"/search?q=cordless+drill&explain=true&{url}")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["results"] == []


def test_only_the_rerank_window_is_reordered_and_the_fused_order_stands_below_it(
    ltr_services: Services, active: str
) -> None:
    pipeline = ltr_services.pipeline
    fused = pipeline.ranked("cordless drill", SearchFilters(), rerank=False)
    served = pipeline.ranked("cordless drill", SearchFilters())
    assert [h.product_id for h in served[:3]] != [h.product_id for h in fused[:3]], "the model moves this query"
    original = pipeline.settings
    pipeline.settings = original.model_copy(update={"rerank_window": 3})
    try:
        hits, detail = pipeline.ranked_with_detail("cordless drill", SearchFilters())
        given = [h.product_id for h in fused[:6]]
        every_candidate = [h.product_id for h in pipeline.rank_candidates("cordless drill", given)]
    finally:
        pipeline.settings = original
    assert detail is not None and len(detail.candidate_ids) == 3
    assert {h.product_id for h in hits[:3]} == {h.product_id for h in fused[:3]}
    assert [h.product_id for h in hits[3:]] == [h.product_id for h in fused[3:]]
    assert all(h.ltr_score is not None for h in hits[:3]) and hits[3].ltr_score is None
    assert every_candidate == [h.product_id for h in pipeline.rank_candidates("cordless drill", given)]


def test_explanations_sum_to_the_scores_and_order_the_page(ltr_services: Services, active: str) -> None:
    client = create_app(services=ltr_services).test_client()
    body = client.get("/search?q=cordless+drill&explain=true&size=20").get_json()
    assert body["reranked_by"] == active
    scores = [result["score"] for result in body["results"]]
    assert scores == sorted(scores, reverse=True)
    for result in body["results"]:
        learned = result["explain"]["learned"]
        assert learned["model_version"] == active and learned["score"] == result["score"]
        assert set(learned["contributions"]) == set(FEATURE_NAMES)
        assert learned["bias"] + sum(learned["contributions"].values()) == pytest.approx(result["score"], abs=1e-9)
    assert len({r["score"] for r in body["results"]}) > 1, "a trained model tells products apart"


def test_a_products_placement_carries_the_models_view_of_it(ltr_services: Services, active: str) -> None:
    client = create_app(services=ltr_services).test_client()
    served = client.get("/search?q=cordless+drill&explain=true&size=20").get_json()["results"]
    fused_order = client.get("/search?q=cordless+drill&rerank=false&size=40").get_json()["results"]
    fused_rank = {r["product_id"]: r["rank"] for r in fused_order}
    moved = next(r for r in served if r["rank"] > 1 and fused_rank[r["product_id"]] != r["rank"])
    body = client.get(f"/products/{moved['product_id']}/explain?q=cordless+drill").get_json()
    assert body["rank"] == moved["rank"] and body["reranked_by"] == active
    assert body["fused_rank"] == fused_rank[moved["product_id"]]
    assert f"moved from fused rank {body['fused_rank']} by model {active}" in body["summary"]
    learned = body["learned"]
    assert learned == moved["explain"]["learned"], "the same score, features and contributions as /search"
    assert learned["bias"] + sum(learned["contributions"].values()) == pytest.approx(learned["score"], abs=1e-9)
    unranked = client.get(f"/products/{moved['product_id']}/explain?q=cordless+drill&rerank=false").get_json()
    assert unranked["reranked_by"] is None and unranked["learned"] is None
    assert unranked["rank"] == unranked["fused_rank"] == body["fused_rank"]


def test_concurrent_activations_keep_every_entry_of_the_history(
    ltr_services: Services, trained: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two operators activating at once: each reads the pointer, adds what it replaces to the
    history and writes it. Writing slowly (injected) makes both read the same pointer unless
    the registry holds them apart, and one entry of the history would be lost."""
    source = ltr_services.pipeline.reranker.registry
    registry = ModelRegistry(tmp_path / "rankers")
    first, second, third = (resave(registry, trained, source=source) for _ in range(3))
    registry.activate(first)
    write = registry_module._atomic_write

    def slow_write(path: Path, text: str) -> None:
        time.sleep(0.3)
        write(path, text)

    monkeypatch.setattr(registry_module, "_atomic_write", slow_write)
    threads = [threading.Thread(target=registry.activate, args=(version,)) for version in (second, third)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pointer = json.loads(registry.active_path.read_text())
    assert pointer["history"][:2] == [None, first] and len(pointer["history"]) == 3  # None: nothing served first
    assert {pointer["version"], *pointer["history"]} == {None, first, second, third}
    registry.rollback()
    assert registry.active_version() == pointer["history"][-1]


def test_rollback_returns_to_the_state_before_the_current_one_no_model_included(
    ltr_services: Services, trained: str, tmp_path: Path
) -> None:
    registry = ModelRegistry(tmp_path / "rankers")  # no bundled model: nothing serves at first
    version = resave(registry, trained, source=ltr_services.pipeline.reranker.registry)
    registry.activate(version)
    registry.deactivate()
    registry.activate(version)
    assert registry.rollback() is None, "before the second activation no model served"
    assert registry.active_version() is None
    assert registry.rollback() == version, "and before the deactivation, the version"
    assert registry.rollback() is None, "and before the first activation, nothing"
    with pytest.raises(NotFoundError, match="nothing to roll back"):
        registry.rollback()


def test_rollback_skips_history_entries_that_repeat_the_current_version(
    ltr_services: Services, trained: str, tmp_path: Path
) -> None:
    registry, source = ModelRegistry(tmp_path / "rankers"), ltr_services.pipeline.reranker.registry
    earlier, current = resave(registry, trained, source=source), resave(registry, trained, source=source)
    # What activate, deactivate, activate wrote before None was recorded in the history.
    registry.active_path.write_text(json.dumps({"version": current, "history": [earlier, current]}))
    assert registry.rollback() == earlier


def test_activation_and_rollback_apply_without_a_restart(ltr_services: Services, trained: str) -> None:
    registry = ltr_services.pipeline.reranker.registry
    client = create_app(services=ltr_services).test_client()
    registry.deactivate()
    assert client.get("/search?q=hammer").get_json()["reranked_by"] is None
    registry.activate(trained)
    assert client.get("/search?q=hammer").get_json()["reranked_by"] == trained
    assert client.get("/search?q=hammer&rerank=false").get_json()["reranked_by"] is None
    second = resave(registry, trained)
    registry.activate(second)
    assert client.get("/search?q=hammer").get_json()["reranked_by"] == second
    assert registry.rollback() == trained
    assert client.get("/search?q=hammer").get_json()["reranked_by"] == trained
    registry.deactivate()
    with pytest.raises(NotFoundError):
        registry.activate("ltr-does-not-exist")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("corrupt", "checksum"),
        ("missing", "checksum"),
        ("features", "other features"),
        ("categories", "judged_categories.json does not match"),
        ("no categories", "judged_categories.json is missing"),
    ],
)
def test_a_broken_model_falls_back_to_the_fused_order_and_reports_degraded(
    ltr_services: Services, trained: str, damage: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry: ModelRegistry = ltr_services.pipeline.reranker.registry
    meta = json.loads((registry.model_dir(trained) / "meta.json").read_text())
    text = (registry.model_dir(trained) / "model.txt").read_text()
    if damage == "features":
        meta["features"] = {**meta["features"], "title_coverage": 99}
    broken = resave(registry, trained, meta)
    model_file, categories_file = (registry.model_dir(broken) / name for name in ("model.txt", CATEGORIES_FILE))
    if damage == "corrupt":  # damaged on disk after training saved it
        model_file.write_text("tree\nthis is not a model\n" + text[: len(text) // 3])
    elif damage == "missing":
        model_file.write_text("")  # truncated to nothing
    elif damage == "categories":
        categories_file.write_text(categories_file.read_text()[:-20])  # truncated
    elif damage == "no categories":
        categories_file.unlink()
    client = create_app(services=ltr_services).test_client()
    fused = client.get("/search?q=cordless+drill&rerank=false").get_json()
    # Activation refuses a broken model, so this one broke while active: the pointer names it.
    registry.active_path.parent.mkdir(parents=True, exist_ok=True)
    registry.active_path.write_text(json.dumps({"version": broken, "history": []}))
    try:
        with caplog.at_level(logging.ERROR, logger="reranker.serving"):
            first = client.get("/search?q=cordless+drill").get_json()
            client.get("/search?q=claw+hammer")
        assert first["reranked_by"] is None
        assert [r["product_id"] for r in first["results"]] == [r["product_id"] for r in fused["results"]]
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.get_json()["status"] == "degraded" and ready.get_json()["reranker"]["version"] == broken
        assert reason in ready.get_json()["reranker"]["reason"]
        assert len([r for r in caplog.records if broken in r.getMessage()]) == 1, "said once, not per request"
    finally:
        registry.deactivate()
    assert client.get("/readyz").get_json()["status"] == "ready"


def test_a_model_deleted_or_damaged_while_serving_degrades_the_running_worker_too(
    ltr_services: Services, trained: str
) -> None:
    import shutil

    registry: ModelRegistry = ltr_services.pipeline.reranker.registry
    copy = resave(registry, trained)
    registry.activate(copy)
    client = create_app(services=ltr_services).test_client()
    try:
        assert client.get("/search?q=cordless+drill").get_json()["reranked_by"] == copy  # loaded and serving
        kept = registry.model_dir(copy).with_name("kept")
        shutil.copytree(registry.model_dir(copy), kept)
        shutil.rmtree(registry.model_dir(copy))  # the pointer is untouched: only the model's files went
        assert client.get("/search?q=cordless+drill").get_json()["reranked_by"] is None
        ready = client.get("/readyz").get_json()
        assert ready["status"] == "degraded" and ready["reranker"]["version"] == copy
        assert ready["reranker"]["reason"].endswith(f"model {copy}'s directory {registry.model_dir(copy)} is missing")
        shutil.copytree(kept, registry.model_dir(copy))  # put back: served again without a restart
        assert client.get("/search?q=cordless+drill").get_json()["reranked_by"] == copy
        model_file = registry.model_dir(copy) / "model.txt"
        model_file.write_text(model_file.read_text()[:-100])  # rewritten in place
        assert client.get("/search?q=cordless+drill").get_json()["reranked_by"] is None
        assert "checksum" in client.get("/readyz").get_json()["reranker"]["reason"]
    finally:
        registry.deactivate()


@pytest.mark.parametrize("damaged", ["statistics", "text table", "missing"])
def test_unreadable_catalog_statistics_serve_the_fused_order_without_corrections_and_say_why(
    ltr_services: Services,
    trained: str,
    embedder: Embedder,
    tmp_path: Path,
    damaged: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = make_services(tmp_path, embedder)
    services.index_catalog(CATALOG)
    registry = services.pipeline.reranker.registry
    registry.activate(resave(registry, trained, source=ltr_services.pipeline.reranker.registry))
    client = create_app(services=services).test_client()
    healthy = client.get("/search?q=dewlat+drill").get_json()
    assert healthy["reranked_by"] and healthy["corrections"] == {"dewlat": "dewalt"}
    version = services.engine.alias_target(services.settings.index_alias)
    path = stats_path(tmp_path, version)
    if damaged == "statistics":
        path.write_text(path.read_text()[:100])  # truncated
    elif damaged == "missing":  # an API host whose data directory did not index the version
        path.unlink()
    else:
        texts = texts_path(path)
        assert texts.is_file()
        texts.write_bytes(b"not a numpy archive")
    restarted = make_services(tmp_path, embedder)  # a new worker reads the damaged file
    client = create_app(services=restarted).test_client()
    with caplog.at_level(logging.ERROR, logger="reranker.serving"):
        first = client.get("/search?q=dewlat+drill")
        client.get("/search?q=claw+hammer")
    assert first.status_code == 200
    body = first.get_json()
    assert body["reranked_by"] is None and body["corrections"] == {} and body["results"]
    fused = client.get("/search?q=dewlat+drill&rerank=false").get_json()
    assert [r["product_id"] for r in body["results"]] == [r["product_id"] for r in fused["results"]]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"
    detail = ready.get_json()["detail"]
    named = {
        "statistics": str(path),
        "text table": str(texts_path(path)),
        "missing": f"no catalog statistics of {version}",
    }
    assert named[damaged] in detail and "re-index" in detail
    said = [
        r.getMessage()
        for r in caplog.records
        if "without spelling correction" in r.getMessage() or "reranker model" in r.getMessage()
    ]
    assert len([m for m in said if "without spelling correction" in m]) == 1, "said once, not per request"
    assert len([m for m in said if "reranker model" in m]) == 1
    judged = read_judgments(JUDGMENTS, queries_path=QUERIES)
    with pytest.raises(ModelError, match=r"cannot compute the features: (the|no) catalog statistics"):
        candidate_lists(restarted.pipeline, judged, judged.scorable(), ["window"])  # training refuses


# ----------------------------------------------------------- feature logging
def test_logged_features_reproduce_the_served_scores_exactly(ltr_services: Services, active: str) -> None:
    client = create_app(services=ltr_services).test_client()
    served = client.get("/search?q=cordless+drill&log_features=true&size=50").get_json()
    logged = [r for r in read_feature_logs(ltr_services.settings.feature_log_dir) if r.query == "cordless drill"][-1]
    assert logged.model_version == active
    assert logged.product_ids[: len(served["results"])] == [r["product_id"] for r in served["results"]]
    registry = ltr_services.pipeline.reranker.registry
    model = RankerModel.from_text(
        active,
        (registry.model_dir(active) / "model.txt").read_text(),
        json.loads((registry.model_dir(active) / "meta.json").read_text()),
    )
    rescored = model.predict(logged.features)
    assert np.array_equal(rescored, logged.scores), "bit-for-bit the served scores"
    assert [float(s) for s in rescored[: len(served["results"])]] == [r["score"] for r in served["results"]]
    judged = read_judgments(JUDGMENTS, queries_path=QUERIES)
    data = collect_from_logs(ltr_services.settings.feature_log_dir, judged, 1.0, CollectOptions())
    group = data.group_ids.index(f"1:log:{logged.request_id}")  # joined to query 1 by its text
    start = sum(data.groups[:group])
    rows = data.features[start : start + data.groups[group]]
    assert np.array_equal(rows, logged.features, equal_nan=True), "training reads exactly the served rows"
    assert data.product_ids[start : start + data.groups[group]] == logged.product_ids


def test_logged_rows_read_the_active_models_category_table_whether_or_not_it_reranked(
    ltr_services: Services, active: str
) -> None:
    # Training from logs mixes requests the model reranked with rerank=false ones: one column,
    # one meaning in both, or the model learns from two tables at once.
    client = create_app(services=ltr_services).test_client()
    logs = ltr_services.settings.feature_log_dir
    for rerank in ("true", "false"):
        client.get(f"/search?q=cordless+drill&log_features=true&rerank={rerank}")
    reranked, fused = [r for r in read_feature_logs(logs) if r.query == "cordless drill"][-2:]
    assert reranked.model_version == active and fused.model_version is None
    records = [json.loads(line) for path in sorted(logs.glob("*.jsonl")) for line in path.read_text().splitlines()]
    assert [r["judged_categories_of"] for r in records[-2:]] == [active, active], "each names the table it read"
    column = FEATURE_NAMES.index("judged_category_agreement")
    by_product = dict(zip(reranked.product_ids, reranked.features[:, column], strict=True))
    shared = [i for i, pid in enumerate(fused.product_ids) if pid in by_product]
    assert len(shared) >= 5
    values = fused.features[shared, column]
    assert not np.isnan(values).all(), "the table is known: the column is not missing"
    np.testing.assert_array_equal(values, [by_product[fused.product_ids[i]] for i in shared])


def test_feature_logging_can_be_sampled(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder, feature_log_sample=1.0)
    services.index_catalog(CATALOG)
    client = create_app(services=services).test_client()
    client.get("/search?q=drill")
    client.get("/search?q=drill&mode=lexical")  # no query vector, no features: nothing to log
    assert [r.query for r in read_feature_logs(services.settings.feature_log_dir)] == ["drill"]
    off = make_services(tmp_path / "off", embedder)
    assert not off.feature_log.wanted(False) and off.feature_log.wanted(True)


def test_a_feature_log_that_cannot_be_written_costs_no_search(
    tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    services = make_services(tmp_path, embedder, feature_log_sample=1.0)
    services.index_catalog(CATALOG)
    services.settings.feature_log_dir.write_text("a file where the log directory should be")
    client = create_app(services=services).test_client()
    with caplog.at_level(logging.WARNING, logger="reranker.feature_log"):
        answers = [client.get(url) for url in ("/search?q=drill", "/search?q=saw&log_features=true")]
    assert [answer.status_code for answer in answers] == [200, 200]
    assert answers[0].get_json()["results"], "the search is served as usual"
    warnings = [r.getMessage() for r in caplog.records if r.name == "reranker.feature_log"]
    assert len(warnings) == 1 and "cannot write the feature log" in warnings[0], "said once, not per request"


# ------------------------------------------------------------------------ CLI
def test_cli_train_models_and_evaluate(tmp_path: Path, embedder: Embedder) -> None:
    from click.testing import CliRunner

    from relevance.cli import main

    make_services(tmp_path, embedder).index_catalog(CATALOG)
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path)]
    judgments = ["--judgments", str(JUDGMENTS), "--queries", str(QUERIES)]

    trained = runner.invoke(main, [*base, "train", *judgments, "--valid-share", "0.3", "--activate", "--json"])
    assert trained.exit_code == 0, trained.output
    meta = json.loads(trained.output[trained.output.index("{") :])
    assert meta["features"] == FEATURE_SPEC and meta["training"]["queries"] >= 5
    assert meta["model_sha256"] and meta["validation"]["queries"] >= 1
    listed = runner.invoke(main, [*base, "models", "list"])
    assert f"* {meta['version']}" in listed.output
    refit = meta["refit"]
    assert (
        f"(of the model stopped at {refit['early_stopped_rounds']} trees; refit to {refit['rounds']})" in listed.output
    )
    back = runner.invoke(main, [*base, "models", "rollback"])  # to the model bundled with the project
    assert back.exit_code == 0 and "active model: default" in back.output
    assert "* default" in runner.invoke(main, [*base, "models", "list"]).output
    no_history = runner.invoke(main, [*base, "models", "rollback"])
    assert no_history.exit_code != 0 and "nothing to roll back" in no_history.output

    fused_only = tmp_path / "fused.toml"
    fused_only.write_text(f'data_dir = "{tmp_path}"\nrerank = false\n')
    report, html = tmp_path / "report.json", tmp_path / "report.html"
    options = ["--vs", str(fused_only), "--samples", "500", "--out", str(report), "--html", str(html)]
    evaluated = runner.invoke(main, [*base, "evaluate", *judgments, *options])
    assert evaluated.exit_code == 0, evaluated.output
    body = json.loads(report.read_text())
    assert body["queries"] == 12
    assert {"judged:ndcg@10", "full:ndcg@10", "full:map", "full:mrr", "full:err@10", "full:p@10"} <= set(
        body["metrics"]
    )
    assert {"full:judged@10", "full:condensed_ndcg@10"} <= set(body["metrics"]), "pool metrics in full retrieval"
    assert not any(m.startswith("judged:") and ("judged@" in m or "condensed" in m) for m in body["metrics"])
    assert set(body["bootstrap"]) == set(body["metrics"]) and "full:ndcg@10" in evaluated.output
    assert "<img" in html.read_text()


# ------------------------------------------------------------ bundled model
def test_the_bundled_model_loads_with_this_builds_features() -> None:
    from relevance.config import BUNDLED_MODEL

    meta = json.loads((BUNDLED_MODEL / "meta.json").read_text())
    model = RankerModel.from_text("default", (BUNDLED_MODEL / "model.txt").read_text(), meta)
    assert meta["features"] == FEATURE_SPEC, "features changed: retrain models/default (see bench/README.md)"
    assert model.predict(np.zeros((3, len(FEATURE_NAMES)))).shape == (3,)


def test_the_bundled_model_serves_until_an_operator_decides(tmp_path: Path, embedder: Embedder) -> None:
    from relevance.config import BUNDLED_MODEL

    services = make_services(tmp_path, embedder, default_model=BUNDLED_MODEL)
    services.index_catalog(titles_only_catalog(tmp_path))  # titles only, like the catalog it was trained on
    client = create_app(services=services).test_client()
    assert client.get("/search?q=drill").get_json()["reranked_by"] == "default"
    status = client.get("/readyz").get_json()["reranker"]
    assert status.items() >= {"state": "active", "version": "default", "reason": None}.items()
    assert status["predictor"] in ("lightgbm", "compiled")  # compiled trees replace LightGBM once built
    services.pipeline.reranker.registry.deactivate()
    assert client.get("/search?q=drill").get_json()["reranked_by"] is None
    services.pipeline.reranker.registry.rollback()
    assert client.get("/search?q=drill").get_json()["reranked_by"] == "default"


def test_a_model_trained_without_a_field_the_catalog_relies_on_leaves_the_fused_order(
    tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    """The bundled model never saw brands, categories or descriptions; the fixture catalog has them all."""
    from relevance.config import BUNDLED_MODEL

    assert json.loads((BUNDLED_MODEL / "meta.json").read_text())["training"]["field_coverage"] == {
        "brand": 0.0,
        "category": 0.0,
        "description": 0.0,
    }
    services = make_services(tmp_path, embedder, default_model=BUNDLED_MODEL)
    services.index_catalog(CATALOG)
    client = create_app(services=services).test_client()
    with caplog.at_level(logging.ERROR, logger="reranker.serving"):
        pages = [client.get("/search?q=cordless+drill").get_json() for _ in range(3)]
    assert all(page["reranked_by"] is None for page in pages)
    fused = services.pipeline.search("cordless drill", SearchFilters(), rerank=False)
    assert [r["product_id"] for r in pages[0]["results"]] == [r.product.product_id for r in fused.results]
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"
    status = ready.get_json()["reranker"]
    assert status["state"] == "degraded" and "trained without product brands" in status["reason"]
    assert "100% of this catalog" in status["reason"]
    assert sum("trained without product" in r.getMessage() for r in caplog.records) == 1, "logged once"

    overridden = make_services(tmp_path, embedder, default_model=BUNDLED_MODEL, rerank_unfit_catalogs=True)
    client = create_app(services=overridden).test_client()  # same data dir: the same index
    assert client.get("/search?q=cordless+drill").get_json()["reranked_by"] == "default", "the operator's override"
    assert client.get("/readyz").get_json()["reranker"]["state"] == "active"


def test_a_model_trained_on_the_catalog_records_the_fields_it_saw(ltr_services: Services, trained: str) -> None:
    registry = ltr_services.pipeline.reranker.registry
    meta = registry_meta(registry, trained)
    assert set(meta["training"]["field_coverage"]) == {"brand", "category", "description"}
    coverage = meta["training"]["field_coverage"]
    assert coverage["brand"] == coverage["category"] == 1.0 and 0 < coverage["description"] < 0.5  # 6 of 40 have one
    model = RankerModel.from_text(trained, (registry.model_dir(trained) / "model.txt").read_text(), meta)
    assert model.unfit_for(ltr_services.pipeline.catalog_stats.current().field_shares()) is None
    assert model.unfit_for({"brand": 1.0, "category": 1.0, "description": 1.0}) is None
    older = RankerModel(model.version, model.booster, {**meta, "training": {"queries": 3}})
    assert older.unfit_for({"category": 1.0}) is None, "models from before coverage was recorded are not judged"


# ------------------------------------------------------------ model registry
def _pointer(registry: ModelRegistry) -> str | None:
    return registry.active_path.read_text() if registry.active_path.exists() else None


def test_activate_takes_only_a_version_of_the_registry_not_a_path(ltr_services: Services, trained: str) -> None:
    from relevance.config import BUNDLED_MODEL

    registry = ltr_services.pipeline.reranker.registry
    before = _pointer(registry)
    for path in (f"../{registry.root.name}/{trained}", str(registry.model_dir(trained)), str(BUNDLED_MODEL), ".."):
        with pytest.raises(NotFoundError, match="no model version"):
            registry.activate(path)
    assert _pointer(registry) == before


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("garbage", "checksum"),
        ("no meta", "meta.json (an interrupted save)"),
        ("meta not json", "meta.json is unreadable"),
        ("features", "other features"),
        ("no categories", "judged_categories.json is missing"),
    ],
)
def test_activate_refuses_a_broken_model_with_the_reason(
    ltr_services: Services, trained: str, damage: str, reason: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from relevance.cli import main

    registry = ltr_services.pipeline.reranker.registry
    broken = resave(registry, trained)
    directory = registry.model_dir(broken)
    if damage == "garbage":
        (directory / "model.txt").write_text("tree\nnot a model\n")
    elif damage == "no meta":
        (directory / "meta.json").unlink()
    elif damage == "meta not json":
        (directory / "meta.json").write_text("{not json")
    elif damage == "features":
        meta = json.loads((directory / "meta.json").read_text())
        (directory / "meta.json").write_text(json.dumps({**meta, "features": {"title_coverage": 1}}))
    else:
        (directory / CATEGORIES_FILE).unlink()
    before = _pointer(registry)
    with pytest.raises(ModelError, match=re.escape(reason)):
        registry.activate(broken)
    result = CliRunner().invoke(main, ["--data-dir", str(ltr_services.settings.data_dir), "models", "activate", broken])
    assert result.exit_code == 1 and f"not activated: model {broken}" in result.output
    assert reason in result.output and _pointer(registry) == before


def test_rollback_refuses_a_model_broken_since_it_was_active(ltr_services: Services, trained: str) -> None:
    registry = ltr_services.pipeline.reranker.registry
    earlier, current = resave(registry, trained), resave(registry, trained)
    registry.activate(earlier)
    registry.activate(current)
    (registry.model_dir(earlier) / "model.txt").write_text("tree\nnot a model\n")
    before = _pointer(registry)
    with pytest.raises(ModelError, match=f"not rolled back to {earlier}: .*checksum"):
        registry.rollback()
    assert _pointer(registry) == before and registry.active_version() == current


def test_models_list_shows_an_unreadable_version_and_goes_on(ltr_services: Services, trained: str) -> None:
    from click.testing import CliRunner

    from relevance.cli import main

    registry = ltr_services.pipeline.reranker.registry
    corrupt, interrupted = resave(registry, trained), resave(registry, trained)
    (registry.model_dir(corrupt) / "meta.json").write_text("{not json")
    (registry.model_dir(interrupted) / "meta.json").unlink()
    result = CliRunner().invoke(main, ["--data-dir", str(ltr_services.settings.data_dir), "models", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith(f"! {corrupt}") and "meta.json is unreadable" in line for line in lines)
    assert any(line.startswith(f"! {interrupted}") and "interrupted save" in line for line in lines)
    assert any(trained in line and not line.startswith("!") for line in lines), "the readable ones are listed"


@pytest.mark.parametrize("pointer", ["{not json", "[]", '{"version": 3}'])
def test_a_corrupt_active_pointer_is_named_and_activate_repairs_it(
    ltr_services: Services, trained: str, pointer: str
) -> None:
    from click.testing import CliRunner

    from relevance.cli import main

    registry = ltr_services.pipeline.reranker.registry
    registry.root.mkdir(parents=True, exist_ok=True)
    registry.active_path.write_text(pointer)
    runner, base = CliRunner(), ["--data-dir", str(ltr_services.settings.data_dir), "models"]
    try:
        listed = runner.invoke(main, [*base, "list"])
        assert listed.exit_code == 0 and str(registry.active_path) in listed.output and trained in listed.output
        back = runner.invoke(main, [*base, "rollback"])
        assert back.exit_code == 1 and str(registry.active_path) in back.output
        assert ltr_services.pipeline.reranker.status().state == "degraded", "serving copes"
        fixed = runner.invoke(main, [*base, "activate", trained])
        assert fixed.exit_code == 0 and f"active model: {trained}" in fixed.output
        assert registry.active_version() == trained
        registry.active_path.write_text(pointer)  # deactivate repairs it too (it reported so and wrote nothing)
        off = runner.invoke(main, [*base, "deactivate"])
        assert off.exit_code == 0 and registry.active_version() is None
        assert ltr_services.pipeline.reranker.status().state == "off"
    finally:
        registry.deactivate()


def test_logged_groups_split_and_report_by_their_query_whatever_its_id_holds(tmp_path: Path) -> None:
    # Quepid files use the query text as its id, so an id may hold ":"; logged groups were
    # split by the text before the first ":" (every such query landed in training) and got
    # no validation figures (only ":window" and ":judged" groups were reported).
    rng = np.random.default_rng(3)
    query_ids = [f"q:{n}" for n in range(1, 25)]
    features, labels, groups, group_ids, kinds = [], [], [], [], []
    for qid in query_ids:
        for request in ("r1", "r2"):
            grades = rng.integers(0, 3, 8)
            rows = np.full((8, len(FEATURE_NAMES)), np.nan)
            rows[:, FEATURE_NAMES.index("fused_rank")] = np.arange(1, 9)
            rows[:, FEATURE_NAMES.index("title_coverage")] = grades + rng.normal(0, 0.3, 8)
            features.append(rows)
            labels.append(grades)
            groups.append(8)
            group_ids.append(f"{qid}:log:{request}")
            kinds.append("log")
    queries = [qid for qid in query_ids for _ in range(2)]
    pids = [f"p{row}" for group in groups for row in range(group)]
    data = TrainingSet(np.vstack(features), np.concatenate(labels), groups, group_ids, queries, kinds, pids)
    fit_queries, valid_queries = split_queries(query_ids, 0.3)
    assert valid_queries, "the hash split holds some out"
    fit = data.subset(set(data.queries) - set(valid_queries))
    valid = data.subset(set(valid_queries))
    assert set(valid.queries) == set(valid_queries) and set(fit.queries) == set(fit_queries)
    assert len(valid.groups) == 2 * len(valid_queries)
    _, meta = train_and_save(
        fit,
        valid,
        ModelRegistry(tmp_path / "rankers"),
        scale=1.0,
        options=CollectOptions(),
        params={"min_data_in_leaf": 5},
    )
    assert meta["validation"]["queries"] == len(valid_queries)
    assert meta["validation"]["log_ndcg@10_model"] > meta["validation"]["log_ndcg@10_fused"]
    assert meta["training"]["queries"] == len(query_ids), "refit on every query"
