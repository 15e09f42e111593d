"""Spelling correction against one catalog's vocabulary: a word in, the catalog's word(s) out.

Queries (relevance.spelling) and the ``corrected_title_coverage`` feature read the same
corrections. A word is left as typed when the catalog has it, when it is shorter than
four letters, or when it is a common English word ("place", "could", "unframed": a
shopper who typed a real word meant it; on Home Depot 76 of 1,130 corrections were of
such words and nearly all were wrong, "find" -> "fin", "much" -> "mulch"). Otherwise,
in this order:

1. the frequent title word closest by rapidfuzz ratio, when it is very close (>= 85):
   "sawall" -> "sawzall", not "saw all";
2. a run-together word split into frequent title words ("snowblower" -> "snow blower",
   "whiteled" -> "white led", not "wheeled"), found by symspellpy's word segmentation;
3. the closest title word at ratio >= 80 ("dewlat" -> "dewalt").
Ties go to the more frequent word ("bemch": "bench" over "beech").
"""

from __future__ import annotations

import importlib.resources
from functools import cache

from rapidfuzz import fuzz, process
from symspellpy import SymSpell

MIN_WORD_LETTERS = 4  # shorter words are too ambiguous to correct ("ac", "led", "pvc")
TARGET_MIN_COUNT = 3  # a correction target is a title word at least this frequent
CLOSE_SCORE = 85.0  # rapidfuzz ratio trusted over a compound split
MIN_SCORE = 80.0  # below it a word is left as typed
COMPOUND_MIN_PART = 3  # letters; and every part must be a frequent word...
COMPOUND_PART_MIN_COUNT = 10  # ...not title noise like "eer" ("draweer" -> "draw eer")
COMMON_ENGLISH_MIN_COUNT = 1_000_000  # occurrences in symspellpy's English frequency list
MEMO_ENTRIES = 100_000  # corrections remembered per process; any text reaches here, so bounded


class CatalogSpeller:
    def __init__(self, words: dict[str, int]) -> None:
        self._words = words  # surface word -> titles holding it
        self._targets = tuple(w for w, n in words.items() if n >= TARGET_MIN_COUNT and len(w) >= 3)
        self._segmenter = SymSpell(max_dictionary_edit_distance=0)  # exact splits only: misspellings go to _closest
        for target in self._targets:
            if words[target] >= COMPOUND_PART_MIN_COUNT:
                self._segmenter.create_dictionary_entry(target, words[target])
        self._memo: dict[str, str] = {}
        common_english_words()  # read now (~80 ms, once per process), not on a shopper's first misspelling

    def correct(self, word: str) -> str:
        """The catalog's spelling of ``word``: itself, one title word, or several joined by spaces."""
        if not self._words or word in self._words or len(word) < MIN_WORD_LETTERS:
            return word
        if word not in self._memo:
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()  # cheaper than LRU bookkeeping on every search; refills with what recurs
            self._memo[word] = self._correction(word)
        return self._memo[word]

    def _correction(self, word: str) -> str:
        if word in common_english_words():
            return word
        closest, score = self._closest(word)
        if score >= CLOSE_SCORE:
            return closest
        parts = self._split(word)
        if parts:
            return " ".join(parts)
        return closest if score >= MIN_SCORE else word

    def _closest(self, word: str) -> tuple[str, float]:
        matches = process.extract(word, self._targets, scorer=fuzz.ratio, score_cutoff=MIN_SCORE, limit=None)
        if not matches:
            return word, 0.0
        best, score, _ = max(matches, key=lambda match: (match[1], self._words[match[0]]))
        return best, score

    def _split(self, word: str) -> list[str] | None:
        if not self._segmenter.words:
            return None  # nothing to split into (and symspellpy fails on an empty dictionary)
        parts = self._segmenter.word_segmentation(word, max_edit_distance=0).segmented_string.split()
        frequent = all(len(p) >= COMPOUND_MIN_PART and self._words.get(p, 0) >= COMPOUND_PART_MIN_COUNT for p in parts)
        return parts if len(parts) > 1 and frequent else None


@cache
def common_english_words() -> frozenset[str]:
    """Words at least ``COMMON_ENGLISH_MIN_COUNT`` times in the English frequency list symspellpy ships."""
    listing = importlib.resources.files("symspellpy") / "frequency_dictionary_en_82_765.txt"
    common = set()
    for line in listing.read_text(encoding="utf-8").splitlines():
        word, count = line.split()
        if int(count) >= COMMON_ENGLISH_MIN_COUNT:
            common.add(word)
    return frozenset(common)
