"""Spelling correction of lexical queries from the catalog's vocabulary (relevance.spelling)."""

from __future__ import annotations

from pathlib import Path

from indexer.catalog import load_catalog
from relevance.spelling import corrections, lexical_text, vector_text
from reranker.catalog_stats import CatalogStats
from tests.conftest import CATALOG


def test_only_words_the_catalog_lacks_are_corrected_and_the_typed_words_stay() -> None:
    stats = CatalogStats.build(load_catalog(CATALOG, Path("/dev/null")).products)
    found = corrections("Dewlat cordless drll 20v", stats)
    assert found == {"dewlat": "dewalt", "drll": "drill"}, "known words and short tokens are left alone"
    assert lexical_text("Dewlat cordless drll 20v", found) == "Dewlat cordless drll 20v dewalt drill"
    assert corrections("cordless drill", stats) == {}
    # "drills" is not in the catalog, but its stem is: the engines' analyzers match it, and
    # adding "drill" would only count that term twice.
    assert stats.correct("drills") == "drill" and corrections("cordless drills", stats) == {}
    assert lexical_text("cordless drill", {}) == "cordless drill"
    assert corrections("zzqqxxw", stats) == {}, "nothing close enough: left as typed"


def test_the_embedding_model_reads_the_query_with_its_misspelt_words_replaced() -> None:
    found = {"dewlat": "dewalt", "drll": "drill"}
    assert vector_text("Dewlat cordless DRLL, 20V", found) == "dewalt cordless drill, 20V"
    assert vector_text("cordless drill", {}) == "cordless drill"
