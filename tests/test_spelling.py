"""Spelling correction from the catalog's vocabulary: the speller (reranker.speller) and
how queries use it (relevance.spelling)."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.catalog import load_catalog
from relevance.spelling import corrections, lexical_text, vector_text
from reranker import speller
from reranker.catalog_stats import CatalogStats
from reranker.features import FEATURE_NAMES, Candidate, compute_features
from reranker.speller import CatalogSpeller
from tests.conftest import CATALOG


def fixture_stats(copies: int = 1) -> CatalogStats:
    return CatalogStats.build(load_catalog(CATALOG, Path("/dev/null")).products * copies)


# ------------------------------------------------------------------- the speller
def test_a_misspelt_word_becomes_the_closest_frequent_title_word() -> None:
    stats = fixture_stats()
    assert stats.correct("dewlat") == "dewalt"
    assert stats.correct("cordless") == "cordless", "a word the catalog has is left alone"
    assert stats.correct("zzzzqqq") == "zzzzqqq", "nothing close enough: left as typed"
    assert stats.correct("drl") == "drl", "too short to correct"


def test_ties_go_to_the_more_frequent_word() -> None:
    # "bemch" is as close to "beech" as to "bench" (rapidfuzz ratio 80 each)
    assert CatalogSpeller({"beech": 12, "bench": 158}).correct("bemch") == "bench"
    assert CatalogSpeller({"beech": 158, "bench": 12}).correct("bemch") == "beech"


def test_common_english_words_are_taken_as_meant() -> None:
    words = {"lace": 40, "driver": 40, "drill": 50}
    spell = CatalogSpeller(words)
    assert spell.correct("place") == "place" and spell.correct("driven") == "driven"
    assert spell.correct("drver") == "driver", "a misspelling still is corrected"
    assert "place" in speller.common_english_words() and "dewlat" not in speller.common_english_words()


def test_a_run_together_word_splits_into_frequent_title_words() -> None:
    words = {"snow": 20, "blower": 15, "nail": 30, "gun": 12, "saw": 600, "all": 500, "sawzall": 20}
    spell = CatalogSpeller({**words, "white": 100, "led": 100, "wheeled": 20})
    assert spell.correct("snowblower") == "snow blower"
    assert spell.correct("nailgun") == "nail gun"
    assert spell.correct("sawall") == "sawzall", "a very close word (ratio 92) wins over a split"
    assert spell.correct("whiteled") == "white led", "a split wins over a merely close word (ratio 80)"
    assert CatalogSpeller({"draw": 20, "eer": 3}).correct("draweer") == "draweer", "no split into title noise"


def test_remembered_corrections_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speller, "MEMO_ENTRIES", 50)
    spell = CatalogSpeller(fixture_stats().words)
    for i in range(500):  # every query text reaches the memo: it must not grow with them
        spell.correct(f"zq{i:04d}x")
    assert 0 < len(spell._memo) <= 50
    assert spell.correct("dewlat") == "dewalt", "still corrects after the memo is emptied"


# ------------------------------------------------------------------- queries
def test_only_words_the_catalog_lacks_are_corrected_and_the_typed_words_stay() -> None:
    stats = fixture_stats()
    found = corrections("Dewlat cordless drll 20v", stats)
    assert found == {"dewlat": "dewalt", "drll": "drill"}, "known words and short tokens are left alone"
    assert lexical_text("Dewlat cordless drll 20v", found) == "Dewlat cordless drll 20v dewalt drill"
    assert corrections("cordless drill", stats) == {}
    # "dewalts" is not in the catalog, but its stem is: the engines' analyzers match it, and
    # adding "dewalt" would only count that term twice.
    assert stats.correct("dewalts") == "dewalt" and corrections("dewalts drill", stats) == {}
    assert lexical_text("cordless drill", {}) == "cordless drill"
    assert corrections("zzqqxxw", stats) == {}, "nothing close enough: left as typed"
    assert corrections("a place to sit", stats) == {}, "common English words are meant as typed"


def test_a_run_together_query_word_is_searched_and_embedded_as_its_parts() -> None:
    stats = fixture_stats(copies=3)  # split parts must be frequent: "cordless" 24 titles, "drill" 27
    found = corrections("dewalt cordlessdrill", stats)
    assert found == {"cordlessdrill": "cordless drill"}
    assert lexical_text("dewalt cordlessdrill", found) == "dewalt cordlessdrill cordless drill"
    assert vector_text("DeWalt CordlessDrill", found) == "DeWalt cordless drill"


def test_the_embedding_model_reads_the_query_with_its_misspelt_words_replaced() -> None:
    found = {"dewlat": "dewalt", "drll": "drill"}
    assert vector_text("Dewlat cordless DRLL, 20V", found) == "dewalt cordless drill, 20V"
    assert vector_text("cordless drill", {}) == "cordless drill"


def test_a_word_with_letters_beyond_ascii_is_not_corrected_piece_by_piece() -> None:
    # The features' words are ASCII letter runs, so "Dewlät" read as "dewl" + "t": "dewl" was
    # corrected to "dewalt" and the embedding model read "dewaltät drill".
    stats = fixture_stats()
    for query in ("Dewlät drill", "mirrör", "Straße"):
        found = corrections(query, stats)
        assert found == {}, query
        assert vector_text(query, found) == query
    assert vector_text("Dewlät dewlat", {"dewlat": "dewalt"}) == "Dewlät dewalt", "whole words only"
    assert corrections("dewlat café", stats) == {"dewlat": "dewalt"}


def test_corrected_title_coverage_counts_every_part_of_a_split_word() -> None:
    stats = fixture_stats(copies=3)
    products = {p.product_id: p for p in load_catalog(CATALOG, Path("/dev/null")).products}
    candidates = [Candidate(products["d1"], 0.02, 1), Candidate(products["d2"], 0.01, 2)]
    rows = compute_features("cordlessdrill", candidates, stats)
    assert list(rows[:, FEATURE_NAMES.index("corrected_title_coverage")]) == [1.0, 1.0], "both parts in both titles"
    assert list(rows[:, FEATURE_NAMES.index("title_coverage")]) == [0.0, 0.0], "as typed, nothing matches"
