from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from relevance.filters import SearchFilters
from relevance.fusion import FusedHit
from relevance.pipeline import FusionOptions
from relevance.services import Services
from reranker.features import FEATURE_NAMES
from tests.conftest import CATALOG

DRILLS = {"d1", "d2", "d3", "d4", "d5"}
BITS = {"b1", "b2", "b3", "b4"}


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "vector"])
def test_cordless_drill_ranks_a_cordless_drill_above_any_drill_bit(services: Services, mode: str) -> None:
    order = [h.product_id for h in services.pipeline.ranked("cordless drill", SearchFilters(), mode=mode)]
    first_bit = min(order.index(pid) for pid in BITS if pid in order)
    assert order[0] in DRILLS - {"d5"}  # d5 is corded
    assert order.index(order[0]) < first_bit


def test_semantic_match_without_shared_words(services: Services) -> None:
    # No product says "couch"; the vector path finds the sofas and hybrid keeps them on top.
    order = [h.product_id for h in services.pipeline.ranked("couch", SearchFilters(), mode="hybrid")]
    assert set(order[:2]) == {"f2", "f3"}
    assert services.pipeline.ranked("couch", SearchFilters(), mode="lexical") == []


@pytest.mark.parametrize("method", ["rrf", "linear"])
def test_pages_are_disjoint_slices_of_one_window(services: Services, method: str) -> None:
    fusion = FusionOptions(method=method)
    window = [h.product_id for h in services.pipeline.ranked("cordless tools", SearchFilters(), fusion=fusion)]
    pages = []
    for page in range(1, 6):
        result = services.pipeline.search("cordless tools", SearchFilters(), page=page, size=7, fusion=fusion)
        assert result.total == len(window)
        pages.append([item.product.product_id for item in result.results])
    seen = [pid for page in pages for pid in page]
    assert len(seen) == len(set(seen)), "no product appears on two pages"
    assert seen == window[: len(seen)]
    assert pages[-1] == [] or len(seen) <= len(window)


def test_hybrid_hits_carry_both_component_scores(services: Services) -> None:
    hits = services.pipeline.ranked("cordless drill", SearchFilters())
    top = hits[0]
    assert top.lexical_rank is not None and top.vector_rank is not None
    assert top.score == pytest.approx(1 / (60 + top.lexical_rank) + 1 / (60 + top.vector_rank))


def test_filters_flow_through_the_pipeline(services: Services) -> None:
    result = services.pipeline.search("chair", SearchFilters(category="Furniture > Living Room Furniture"), size=50)
    assert result.results
    assert all(item.product.category.startswith("Furniture > Living Room Furniture") for item in result.results)


def test_rank_candidates_returns_every_candidate_once(services: Services) -> None:
    candidates = ["b1", "d1", "f5", "unknown-id", "d1"]
    ranked = services.pipeline.rank_candidates("cordless drill", candidates)
    assert [h.product_id for h in ranked][:1] == ["d1"]
    assert sorted(h.product_id for h in ranked) == ["b1", "d1", "f5", "unknown-id"]
    assert ranked[-1].product_id == "unknown-id"
    lexical = services.pipeline.rank_candidates("cordless drill", candidates, mode="lexical")
    assert [h.product_id for h in lexical][-2:] == ["f5", "unknown-id"]  # unmatched keep their order at the end


def test_similar_excludes_itself_and_respects_filters(services: Services) -> None:
    result = services.pipeline.similar("d1", SearchFilters(category="Tools"), size=5)
    got = [item.product.product_id for item in result.results]
    assert "d1" not in got and len(got) == 5
    assert got[0] in DRILLS
    assert all(item.product.category.startswith("Tools") for item in result.results)


def record_calls(
    monkeypatch: pytest.MonkeyPatch,
    events: dict[str, tuple[float, str]],
    key: str,
    owner: object,
    method: str,
    delay: float = 0.0,
) -> None:
    """Record when and in which thread ``owner.method`` is called; ``delay``: make it that slow,
    so an overlap with it cannot be luck."""
    original = getattr(owner, method)

    def recorded(*args: object, **kwargs: object) -> object:
        events[key] = (time.perf_counter(), threading.current_thread().name)
        time.sleep(delay)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, method, recorded)


def test_server_engines_run_the_lexical_search_while_the_query_is_embedded(
    engine_services: tuple[str, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a server, hybrid latency is max(lexical, embed + kNN), not their sum; in process the
    lexical search stays in the request thread (it would compete with the embedding for the cores)."""
    name, services = engine_services
    services.index_catalog(CATALOG)
    pipeline = services.pipeline
    events: dict[str, tuple[float, str]] = {}
    record_calls(monkeypatch, events, "embed", pipeline.embedder, "encode_query", delay=0.3)
    record_calls(monkeypatch, events, "lexical", pipeline.engine, "lexical_search")
    hits = pipeline.ranked("cordless drill", SearchFilters(), mode="hybrid", rerank=False)
    (embed_at, embed_thread), (lexical_at, lexical_thread) = events["embed"], events["lexical"]
    if name == "embedded":
        assert lexical_thread == embed_thread and lexical_at > embed_at + 0.3
    else:
        assert lexical_thread != embed_thread and lexical_at < embed_at + 0.3
    assert any(hit.lexical_rank is not None for hit in hits) and any(hit.vector_rank is not None for hit in hits)


def test_server_engines_score_unscored_candidates_while_the_window_is_fetched(
    engine_services: tuple[str, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rerank stage's two round trips (the window's products, the cosines of candidates the
    kNN list did not score) overlap on a server; in process they run one after the other."""
    name, services = engine_services
    services.index_catalog(CATALOG)
    pipeline, engine = services.pipeline, services.pipeline.engine
    lexical = engine.lexical_search(pipeline.alias, "cordless drill", SearchFilters(), 5)
    window = [FusedHit(hit.product_id, 1.0 / rank, hit.score, rank, None, None) for rank, hit in enumerate(lexical, 1)]
    vector = pipeline.embedder.encode_query("cordless drill")
    events: dict[str, tuple[float, str]] = {}
    cosines = engine.cosines
    record_calls(monkeypatch, events, "get", engine, "get", delay=0.3)
    record_calls(monkeypatch, events, "cosines", engine, "cosines")
    kept, rows, _ = pipeline.candidate_features("cordless drill", vector, window)
    (get_at, get_thread), (cosines_at, cosines_thread) = events["get"], events["cosines"]
    if name == "embedded":
        assert cosines_thread == get_thread and cosines_at > get_at + 0.3
    else:
        assert cosines_thread != get_thread and cosines_at < get_at + 0.3
    expected = cosines(pipeline.alias, vector, [hit.product_id for hit in kept])
    served = rows[:, FEATURE_NAMES.index("vector_cosine")]
    assert served == pytest.approx([expected[hit.product_id] for hit in kept], abs=1e-6)


def test_server_engines_fetch_a_versions_products_once_and_never_serve_them_for_another_version(
    engine_services: tuple[str, Services], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, services = engine_services
    services.index_catalog(CATALOG)
    pipeline, engine = services.pipeline, services.pipeline.engine
    fetched: list[str] = []
    get = engine.get

    def counted_get(index: str, product_ids: list[str]) -> dict:
        fetched.extend(product_ids)
        return get(index, product_ids)

    monkeypatch.setattr(engine, "get", counted_get)
    first = pipeline.search("cordless drill", SearchFilters(), features=True)
    assert first.rerank is not None and set(fetched) == set(first.rerank.candidate_ids)
    fetched.clear()
    again = pipeline.search("cordless drill", SearchFilters(), features=True)
    assert [item.product for item in again.results] == [item.product for item in first.results]
    if name == "embedded":
        assert fetched, "in process every search reads its products from the live snapshot"
    else:
        assert fetched == [], "a committed version's products are fetched once per worker"

    renamed = tmp_path / "renamed.jsonl"
    with CATALOG.open(encoding="utf-8") as source, renamed.open("w", encoding="utf-8") as target:
        for line in source:
            product = json.loads(line)
            target.write(json.dumps({**product, "title": product["title"] + " Mk II"}) + "\n")
    services.index_catalog(renamed)  # a new version under the alias
    after = pipeline.search("cordless drill", SearchFilters(), features=True)
    assert after.rerank is not None and after.results
    assert all(product.title.endswith(" Mk II") for product in after.rerank.products.values())


def test_the_embedding_check_reads_each_versions_metadata_once(
    engine_services: tuple[str, Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check before every vector search costs no round trip per search: a version's
    recorded embedding is read once, and again only when the alias moves to another version."""
    _, services = engine_services
    services.index_catalog(CATALOG)
    pipeline = services.pipeline
    reads: list[str] = []
    read_metadata = pipeline.engine.version_metadata
    monkeypatch.setattr(pipeline.engine, "version_metadata", lambda index: reads.append(index) or read_metadata(index))
    for text in ("drill", "cordless drill", "hammer", "paint", "drill bit"):
        assert pipeline.ranked(text, SearchFilters(), mode="hybrid", rerank=False)
    first = services.engine.alias_target(services.settings.index_alias)
    assert reads == [first]
    services.index_catalog(CATALOG)  # a new version behind the alias (its checks read it on their own)
    pipeline.served.ttl_seconds = 0  # instead of waiting out the alias lookup's few seconds
    reads.clear()
    assert pipeline.ranked("drill", SearchFilters(), mode="vector")
    assert pipeline.ranked("cordless drill", SearchFilters(), mode="vector")
    second = services.engine.alias_target(services.settings.index_alias)
    assert second != first and reads == [second], "the serving pipeline reads the new version, once"


def test_catalog_statistics_are_read_once_per_version_and_follow_the_alias(
    engine_services: tuple[str, Services], tmp_path: Path
) -> None:
    """Features and spelling read the served version's statistics: one read per version, and
    the new version's after a swap (its speller knows the new catalog's words)."""
    _, services = engine_services
    services.index_catalog(CATALOG)
    pipeline = services.pipeline
    pipeline.served.ttl_seconds = 0  # follow the alias at once
    first = pipeline.catalog_stats.current()
    assert pipeline.catalog_stats.current() is first, "the same version is not read again"
    assert "grinder" not in first.words and pipeline.spelling_corrections("angle grindr") == {}
    grinders = tmp_path / "grinders.jsonl"
    with CATALOG.open(encoding="utf-8") as source, grinders.open("w", encoding="utf-8") as target:
        target.write(source.read().rstrip("\n") + "\n")
        for i in range(3):  # correction targets appear in at least 3 titles
            target.write(json.dumps({"product_id": f"grinder-{i}", "title": f"Angle Grinder {i + 4} in."}) + "\n")
    services.index_catalog(grinders)
    second = pipeline.catalog_stats.current()
    assert second is not first and second.documents == first.documents + 3
    assert pipeline.spelling_corrections("angle grindr") == {"grindr": "grinder"}


def test_the_first_search_after_an_index_appears_reads_its_statistics(engine_services: tuple[str, Services]) -> None:
    """While no index is served the alias is looked up every time (its lookup is otherwise
    remembered for a few seconds), so statistics never come from the empty catalog once one is."""
    _, services = engine_services
    pipeline = services.pipeline
    assert pipeline.served.current() is None and pipeline.catalog_stats.current().documents == 0
    services.index_catalog(CATALOG)
    assert pipeline.served.current() == services.engine.alias_target(services.settings.index_alias)
    assert pipeline.catalog_stats.current().documents == len(CATALOG.read_text().splitlines())
