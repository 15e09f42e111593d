"""The engine conformance suite: every test runs on every available engine.

Only the ``engine`` fixture knows engine names; the tests speak the SearchEngine
interface. Elasticsearch and OpenSearch run where .ci/run started them
(RELEVANCE_TEST_ELASTICSEARCH_URL / RELEVANCE_TEST_OPENSEARCH_URL) and skip elsewhere.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog import load_catalog
from indexer.product import Product
from indexer.product_text import product_text
from relevance.embedder import Embedder
from relevance.engines.base import IndexedProduct, SearchEngine
from relevance.engines.embedded import EmbeddedEngine
from relevance.errors import IndexNotReadyError
from relevance.filters import SearchFilters
from tests.conftest import CATALOG

ALIAS = f"conformance-{uuid.uuid4().hex[:8]}"  # unique per run: servers outlive a test session
ENGINES = ["embedded", "elasticsearch", "opensearch"]
SERVER_URLS = {
    "elasticsearch": os.environ.get("RELEVANCE_TEST_ELASTICSEARCH_URL"),
    "opensearch": os.environ.get("RELEVANCE_TEST_OPENSEARCH_URL"),
}


@pytest.fixture(scope="module")
def catalog_items(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> list[IndexedProduct]:
    loaded = load_catalog(CATALOG, tmp_path_factory.mktemp("dl") / "dead.jsonl")
    vectors = embedder.encode([product_text(p, ["title", "brand", "category"]) for p in loaded.products])
    return [IndexedProduct(p, v) for p, v in zip(loaded.products, vectors, strict=True)]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SearchEngine]:
    if request.param == "embedded":
        yield EmbeddedEngine(tmp_path / "indexes")
        return
    url = SERVER_URLS[request.param]
    if not url:
        pytest.skip(f"no {request.param} node (set RELEVANCE_TEST_{request.param.upper()}_URL; .ci/run does)")
    request.applymarker(pytest.mark.engines)
    if request.param == "elasticsearch":
        from relevance.engines.elasticsearch import ElasticsearchEngine

        server: SearchEngine = ElasticsearchEngine(url, timeout=30)
    else:
        from relevance.engines.opensearch import OpenSearchEngine

        server = OpenSearchEngine(url, timeout=30)
    yield server
    for version in server.list_versions(ALIAS):
        server.drop_version(version.name)


@pytest.fixture
def live(engine: SearchEngine, catalog_items: list[IndexedProduct]) -> SearchEngine:
    version = engine.create_version(ALIAS, len(catalog_items[0].vector), {"test": True})
    assert engine.bulk_upsert(version, catalog_items) == []
    engine.commit(version)
    engine.swap_alias(ALIAS, version)
    return engine


def ids(hits: list) -> list[str]:
    return [hit.product_id for hit in hits]


def by_id(items: list[IndexedProduct]) -> dict[str, IndexedProduct]:
    return {item.product.product_id: item for item in items}


def test_count_and_get(live: SearchEngine, catalog_items: list[IndexedProduct]) -> None:
    assert live.count(ALIAS) == len(catalog_items)
    found = live.get(ALIAS, ["d1", "missing", "f1"])
    assert set(found) == {"d1", "f1"}
    assert found["d1"].brand == "DEWALT" and found["d1"].price == 129.0


def test_get_returns_whole_products_for_a_window_of_ids(
    live: SearchEngine, catalog_items: list[IndexedProduct]
) -> None:
    wanted = [item.product.product_id for item in catalog_items]
    found = live.get(ALIAS, [*wanted, "missing", wanted[0]])  # duplicates and unknown ids asked too
    assert found == {item.product.product_id: item.product for item in catalog_items}


def test_products_read_back_keep_their_text_as_indexed(
    engine: SearchEngine, catalog_items: list[IndexedProduct]
) -> None:
    # Catalog text is cleaned once, when read: escaped markup and double-escaped references
    # decode to text that a second cleaning would change again.
    product = Product(product_id="esc", title="Tom &amp;amp; Jerry Mug", description="&lt;b&gt;Bold&lt;/b&gt; mug")
    assert (product.title, product.description) == ("Tom &amp; Jerry Mug", "<b>Bold</b> mug")
    version = engine.create_version(ALIAS, len(catalog_items[0].vector), {"test": True})
    assert engine.bulk_upsert(version, [IndexedProduct(product, catalog_items[0].vector)]) == []
    engine.commit(version)
    assert engine.get(version, ["esc"]) == {"esc": product}
    assert engine.get(version, ["esc"])["esc"].text_fingerprint == product.text_fingerprint


def test_get_vectors_returns_the_indexed_vectors(live: SearchEngine, catalog_items: list[IndexedProduct]) -> None:
    wanted = ["d1", "f1", "missing"]
    vectors = live.get_vectors(ALIAS, wanted)
    assert set(vectors) == {"d1", "f1"}
    for product_id, vector in vectors.items():
        np.testing.assert_allclose(vector, by_id(catalog_items)[product_id].vector, atol=1e-6)
    assert live.get_vectors(ALIAS, []) == {}


def test_lexical_ranks_the_matching_product_first(live: SearchEngine) -> None:
    hits = live.lexical_search(ALIAS, "cordless drill", SearchFilters(), 10)
    assert hits[0].product_id in {"d1", "d2", "d3", "d4"}
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_servers_report_the_version_that_answered(live: SearchEngine) -> None:
    vector = np.zeros(384)
    vector[0] = 1.0
    hits = [
        *live.lexical_search(ALIAS, "cordless drill", SearchFilters(), 5),
        *live.vector_search(ALIAS, vector, SearchFilters(), 5),
    ]
    expected = None if live.name == "embedded" else live.alias_target(ALIAS)  # products are a round trip there
    assert hits and {hit.version for hit in hits} == {expected}


def test_lexical_stems_and_drops_stop_words(live: SearchEngine) -> None:
    assert "d1" in ids(live.lexical_search(ALIAS, "the drills", SearchFilters(), 20))
    assert live.lexical_search(ALIAS, "the of and", SearchFilters(), 10) == []


def test_lexical_folds_accents_as_every_engine_does(live: SearchEngine) -> None:
    # The embedded analyzer folds to ASCII; the servers' built-in "english" analyzer did not,
    # so "sofá" found nothing there and 53 products on the embedded engine.
    plain = ids(live.lexical_search(ALIAS, "cordless drill", SearchFilters(), 20))
    assert plain and ids(live.lexical_search(ALIAS, "córdless drïll", SearchFilters(), 20)) == plain


def test_field_boosts_rank_title_matches_above_category_matches(live: SearchEngine) -> None:
    # "hammer" is in the titles of h1/h2 and d2 ("Hammer Drill"); "Hammers" is also h1/h2's category
    hits = ids(live.lexical_search(ALIAS, "hammer", SearchFilters(), 10))
    assert set(hits[:2]) == {"h1", "h2"}


FILTER_CASES = [
    (SearchFilters(category="Tools > Power Tools"), lambda p: (p.category or "").startswith("Tools > Power Tools")),
    (SearchFilters(category="tools > power tools > drills"), lambda p: p.category == "Tools > Power Tools > Drills"),
    (SearchFilters(brand=("dewalt", "Bosch")), lambda p: p.brand in ("DEWALT", "Bosch")),
    (SearchFilters(price_min=50, price_max=150), lambda p: p.price is not None and 50 <= p.price <= 150),
    (SearchFilters(in_stock=False), lambda p: p.in_stock is False),
    (
        SearchFilters(category="Tools", in_stock=True, price_max=100),
        lambda p: (p.category or "").startswith("Tools") and p.in_stock and p.price <= 100,
    ),
]


@pytest.mark.parametrize(("filters", "allowed"), FILTER_CASES)
def test_filters_apply_in_lexical_retrieval(
    live: SearchEngine, catalog_items: list[IndexedProduct], filters: SearchFilters, allowed
) -> None:
    products = by_id(catalog_items)
    hits = live.lexical_search(ALIAS, "cordless drill saw bit tools chair", filters, 100)
    assert hits, "the query matches products in every filtered set"
    assert all(allowed(products[h.product_id].product) for h in hits)
    unfiltered = live.lexical_search(ALIAS, "cordless drill saw bit tools chair", SearchFilters(), 100)
    expected = [h.product_id for h in unfiltered if allowed(products[h.product_id].product)]
    assert sorted(ids(hits)) == sorted(expected)


@pytest.mark.parametrize(("filters", "allowed"), FILTER_CASES)
def test_filters_apply_inside_vector_retrieval(
    live: SearchEngine, catalog_items: list[IndexedProduct], filters: SearchFilters, allowed
) -> None:
    products = by_id(catalog_items)
    query = products["d1"].vector
    matching = [pid for pid, item in products.items() if allowed(item.product)]
    hits = live.vector_search(ALIAS, query, filters, 5)
    # a selective filter still returns up to k hits: the filter runs inside the kNN search
    assert len(hits) == min(5, len(matching))
    assert all(h.product_id in matching for h in hits)


def test_category_prefix_stops_at_segment_boundaries(live: SearchEngine) -> None:
    assert live.lexical_search(ALIAS, "drill", SearchFilters(category="Tools > Power"), 10) == []
    assert (
        live.vector_search(ALIAS, np.ones(384, np.float32) / np.sqrt(384), SearchFilters(category="Tools > Power"), 10)
        == []
    )


def _index_accented(engine: SearchEngine) -> None:
    products = [
        Product(product_id="w1", title="Wall Shelf", brand="Straße Werke", category="Décor > Wall Décor"),
        Product(product_id="w2", title="Wall Shelf", brand="Strasse", category="Decor > Wall Art"),
        Product(product_id="w3", title="Wall Shelf", brand="Acme", category="Décor > Wall"),
    ]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(products), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    version = engine.create_version(ALIAS, 384, {"test": True})
    assert engine.bulk_upsert(version, [IndexedProduct(p, v) for p, v in zip(products, vectors, strict=True)]) == []
    engine.commit(version)
    engine.swap_alias(ALIAS, version)


def _both_paths(engine: SearchEngine, filters: SearchFilters) -> set[str]:
    """What a filter lets through, asked of the lexical and the vector path (which must agree)."""
    lexical = set(ids(engine.lexical_search(ALIAS, "wall shelf", filters, 10)))
    vector = set(ids(engine.vector_search(ALIAS, np.ones(384, np.float32) / np.sqrt(384), filters, 10)))
    assert lexical == vector
    return lexical


@pytest.mark.parametrize("written", ["folded", "lowercased only (an index written before keys were folded)"])
def test_brand_and_category_filters_match_folded_text(
    engine: SearchEngine, written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if written != "folded":  # the keys such an index holds: lowercased, accents kept
        import relevance.engines.embedded as embedded
        import relevance.engines.search_server as search_server
        from relevance import filters

        monkeypatch.setattr(embedded, "FILTER_KEYS", "lowered")
        monkeypatch.setattr(search_server, "brand_key", filters.lowered_brand_key)
        monkeypatch.setattr(
            search_server,
            "category_prefix_keys",
            lambda path: filters.category_prefix_keys(path, filters.lowered_category_key),
        )
    _index_accented(engine)
    monkeypatch.undo()
    assert _both_paths(engine, SearchFilters(brand=("straße werke",))) == {"w1"}, "as written always matches"
    assert _both_paths(engine, SearchFilters(category="DÉCOR > wall décor")) == {"w1"}
    assert _both_paths(engine, SearchFilters(category="Décor > Wall")) == {"w3"}, "segment boundaries still hold"
    if written == "folded":
        assert _both_paths(engine, SearchFilters(brand=("STRASSE WERKE",))) == {"w1"}
        assert _both_paths(engine, SearchFilters(brand=("strasse",))) == {"w2"}
        assert _both_paths(engine, SearchFilters(category="decor")) == {"w1", "w2", "w3"}
        assert _both_paths(engine, SearchFilters(category="Decor > Wall Decor")) == {"w1"}
    else:  # what it matched before (and the folded form too); other spellings wait for a re-index
        assert _both_paths(engine, SearchFilters(category="décor")) == {"w1", "w2", "w3"}
        assert _both_paths(engine, SearchFilters(brand=("STRASSE WERKE",))) == set()


def test_vector_search_is_exact_cosine_order(live: SearchEngine, catalog_items: list[IndexedProduct]) -> None:
    query = by_id(catalog_items)["f1"].vector
    hits = live.vector_search(ALIAS, query, SearchFilters(), 10)
    exact = sorted(catalog_items, key=lambda item: -float(item.vector @ query))[:10]
    assert ids(hits) == [item.product.product_id for item in exact]
    assert hits[0].product_id == "f1" and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_cosines_score_exactly_the_products_asked_for(live: SearchEngine, catalog_items: list[IndexedProduct]) -> None:
    query = catalog_items[0].vector + catalog_items[7].vector
    query = query / np.linalg.norm(query)
    # The least similar products too: a search that is not exhaustive would drop them.
    wanted = [item.product.product_id for item in sorted(catalog_items, key=lambda item: float(item.vector @ query))]
    wanted = wanted[:15] + wanted[-3:]
    scores = live.cosines(ALIAS, query, [*wanted, "no-such-product"])
    assert set(scores) == set(wanted)
    for product_id in wanted:
        assert scores[product_id] == pytest.approx(float(by_id(catalog_items)[product_id].vector @ query), abs=1e-5)
    assert live.cosines(ALIAS, query, []) == {}


def test_vector_search_excludes_ids(live: SearchEngine, catalog_items: list[IndexedProduct]) -> None:
    query = by_id(catalog_items)["f1"].vector
    assert "f1" not in ids(live.vector_search(ALIAS, query, SearchFilters(), 10, exclude_ids=["f1"]))


def test_product_id_filter_restricts_both_paths(live: SearchEngine, catalog_items: list[IndexedProduct]) -> None:
    only = SearchFilters(product_ids=("b1", "d1", "f1"))
    assert set(ids(live.lexical_search(ALIAS, "drill", only, 10))) == {"b1", "d1"}
    assert set(ids(live.vector_search(ALIAS, by_id(catalog_items)["d1"].vector, only, 10))) == {"b1", "d1", "f1"}


def test_upsert_replaces_and_delete_removes(live: SearchEngine, catalog_items: list[IndexedProduct]) -> None:
    items = by_id(catalog_items)
    changed = Product(product_id="b4", title="Irwin Glow In The Dark Spade Bit", brand="Irwin", price=99.0)
    live.bulk_upsert(ALIAS, [IndexedProduct(changed, items["b4"].vector)])
    assert live.delete(ALIAS, ["h3", "not-there"]) == 1
    live.commit(ALIAS)
    assert live.get(ALIAS, ["b4"])["b4"].title == "Irwin Glow In The Dark Spade Bit"
    assert ids(live.lexical_search(ALIAS, "glow dark", SearchFilters(), 5)) == ["b4"]
    assert "b4" in ids(live.lexical_search(ALIAS, "spade", SearchFilters(price_min=90), 5))
    assert live.get(ALIAS, ["h3"]) == {}
    assert "h3" not in ids(live.lexical_search(ALIAS, "screwdriver", SearchFilters(), 10))
    assert "h3" not in ids(live.vector_search(ALIAS, items["h3"].vector, SearchFilters(), 40))
    assert live.count(ALIAS) == len(catalog_items) - 1


def test_versions_and_atomic_alias_swap(live: SearchEngine, catalog_items: list[IndexedProduct]) -> None:
    first = live.alias_target(ALIAS)
    second = live.create_version(ALIAS, 384, {})
    live.bulk_upsert(second, catalog_items[:5])
    # an uncommitted version is invisible: the alias still serves the first one
    assert live.count(ALIAS) == len(catalog_items)
    live.commit(second)
    assert live.swap_alias(ALIAS, second) == first
    assert live.count(ALIAS) == 5
    versions = {v.name: v for v in live.list_versions(ALIAS)}
    assert set(versions) == {first, second} and versions[second].is_live and not versions[first].is_live
    live.swap_alias(ALIAS, first)  # rollback
    assert live.count(ALIAS) == len(catalog_items)
    live.drop_version(second)
    assert [v.name for v in live.list_versions(ALIAS)] == [first]


def test_missing_alias_is_not_ready(engine: SearchEngine) -> None:
    with pytest.raises(IndexNotReadyError):
        engine.lexical_search("nothing-here", "drill", SearchFilters(), 10)


def test_a_second_reader_sees_swaps_and_commits(
    live: SearchEngine, catalog_items: list[IndexedProduct], tmp_path: Path
) -> None:
    if not isinstance(live, EmbeddedEngine):
        pytest.skip("server engines share state by design")
    reader = EmbeddedEngine(live.root)  # another worker process's view of the same files
    assert reader.count(ALIAS) == len(catalog_items)
    live.delete(ALIAS, ["d1"])
    live.commit(ALIAS)
    assert reader.get(ALIAS, ["d1"]) == {}
    newer = live.create_version(ALIAS, 384, {})
    live.bulk_upsert(newer, catalog_items[:3])
    live.commit(newer)
    live.swap_alias(ALIAS, newer)
    assert reader.count(ALIAS) == 3


def test_hnsw_above_the_exact_limit_keeps_recall_and_filters(
    tmp_path: Path, catalog_items: list[IndexedProduct]
) -> None:
    engine = EmbeddedEngine(tmp_path / "hnsw", exact_knn_max=10)
    version = engine.create_version(ALIAS, 384, {})
    engine.bulk_upsert(version, catalog_items)
    engine.commit(version)
    engine.swap_alias(ALIAS, version)
    assert list((tmp_path / "hnsw" / "versions" / version).glob("hnsw-*.bin")), "an HNSW index was built"
    items = by_id(catalog_items)
    recalls = []
    for item in catalog_items:
        exact = sorted(catalog_items, key=lambda other: -float(other.vector @ item.vector))[:10]
        got = ids(engine.vector_search(ALIAS, item.vector, SearchFilters(), 10))
        recalls.append(len(set(got) & {e.product.product_id for e in exact}) / 10)
    assert np.mean(recalls) >= 0.95
    # a filter allowing more rows than the exact limit goes through HNSW's filter
    tools = SearchFilters(category="Tools")
    hits = engine.vector_search(ALIAS, items["f1"].vector, tools, 5)
    assert len(hits) == 5 and all(items[h.product_id].product.category.startswith("Tools") for h in hits)
    # the same vector set in a new version reuses the cached graph instead of rebuilding it
    cached = list((tmp_path / "hnsw" / "hnsw-cache").glob("*.bin"))
    again = engine.create_version(ALIAS, 384, {})
    engine.bulk_upsert(again, catalog_items)
    engine.commit(again)
    assert list((tmp_path / "hnsw" / "hnsw-cache").glob("*.bin")) == cached
    assert ids(engine.vector_search(again, items["f1"].vector, SearchFilters(), 10)) == ids(
        engine.vector_search(version, items["f1"].vector, SearchFilters(), 10)
    )


def test_two_builds_of_one_catalog_answer_identically(tmp_path: Path) -> None:
    # Offline numbers must not move when the same catalog is indexed into a fresh data
    # dir: before, the HNSW graph followed thread timing and BM25 ties the segment split.
    rng = np.random.default_rng(7)
    words = ["drill", "saw", "cordless", "hammer", "blade", "steel", "oak", "white"]
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [
        IndexedProduct(Product(product_id=f"p{i}", title=" ".join(rng.choice(words, 3))), vector)
        for i, vector in enumerate(vectors)
    ]

    def build(root: Path) -> EmbeddedEngine:
        engine = EmbeddedEngine(root, exact_knn_max=100)
        version = engine.create_version(ALIAS, 32, {})
        for start in range(0, len(items), 500):
            engine.bulk_upsert(version, items[start : start + 500])
        engine.commit(version)
        engine.swap_alias(ALIAS, version)
        return engine

    first, second = build(tmp_path / "one"), build(tmp_path / "two")
    graphs = [sorted((tmp_path / name / "hnsw-cache").glob("*.bin")) for name in ("one", "two")]
    assert len(graphs[0]) == 1 and graphs[0][0].read_bytes() == graphs[1][0].read_bytes()
    for query in ("drill", "cordless saw", "white oak blade"):
        hits = [
            [(h.product_id, h.score) for h in e.lexical_search(ALIAS, query, SearchFilters(), 200)]
            for e in (first, second)
        ]
        assert len(hits[0]) == 200 and hits[0] == hits[1]
    for vector in vectors[:20]:
        assert ids(first.vector_search(ALIAS, vector, SearchFilters(), 50)) == ids(
            second.vector_search(ALIAS, vector, SearchFilters(), 50)
        )
