"""Spelling correction of queries from the served catalog's own vocabulary.

BM25 matches terms exactly, so a query word the catalog never spells that way
("dewlat", "snowblower") matches nothing and the lexical list is left to the query's
other words. Each query word whose stem no product's text has goes to the catalog's
speller (``CatalogStats.correct``, reranker.speller: the closest frequent title word, or
the title words a run-together word is made of; common English words are taken as
meant), and the lexical query keeps the words as typed and adds the corrections: BM25
sums the terms that match, so a rare word spelt right still counts.
On the Home Depot dev split this lifts BM25 full-retrieval NDCG@10 from 0.3620 to 0.3742
(bench/README.md, "Spelling correction"). The embedding model reads the query with
the misspelt words replaced (adding them instead helped it half as much): kNN
full-retrieval NDCG@10 on the corrected queries rises from 0.165 to 0.207, at no extra
cost, since the query is embedded once either way.
"""

from __future__ import annotations

import re

from reranker.catalog_stats import CatalogStats
from reranker.text import analyse, stem_words


def corrections(text: str, stats: CatalogStats) -> dict[str, str]:
    """Query words the catalog lacks -> the catalog word taken for them (empty: nothing to correct).

    A word whose stem some product's text has (any field) is not misspelt: the engines'
    analyzers already match its other forms, and adding "clock" to "wall clocks" would
    only count the term twice (measured: it cost BM25 0.016 on the demo catalog's
    product-type queries). Likewise a correction with the word's own stem.
    """
    found = {}
    known_stems = stats.texts.stems
    # analyse's words are ASCII letter runs, so "dewlät" reads as "dewl" and "t": a fragment
    # like that is no word of the query's and is never corrected (it made "dewaltät").
    whole_words = {word for word in _LETTERS.findall(text.lower()) if word.isascii()}
    for word in dict.fromkeys(analyse(text).words):
        if word not in whole_words:
            continue
        (stem,) = stem_words([word])
        if known_stems.get(stem) >= 0:
            continue
        corrected = stats.correct(word)
        if corrected != word and (" " in corrected or stem_words([corrected])[0] != stem):
            found[word] = corrected
    return found


def lexical_text(text: str, corrected: dict[str, str]) -> str:
    """The query as typed, then the corrections of its misspelt words."""
    return " ".join([text, *corrected.values()]) if corrected else text


def vector_text(text: str, corrected: dict[str, str]) -> str:
    """The query with its misspelt words replaced: what the embedding model reads."""
    if not corrected:
        return text
    return _LETTERS.sub(lambda word: corrected.get(word.group(0).lower(), word.group(0)), text)


_LETTERS = re.compile(r"[^\W\d_]+")  # letter runs, any script: a correction replaces whole words only
