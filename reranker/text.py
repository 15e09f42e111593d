"""How the reranker reads a query or a product title: stems, numbers with units, phrases.

Shoppers write sizes in many ways ("1/2 in.", '1/2"', "0.5 inch", "60 gal", "60-gallon"),
so numbers and units are normalised to (value, unit) pairs before matching. Stemming is
Snowball English (PyStemmer); the unit table and number grammar are ours because no
library covers retail size notation.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

import Stemmer

_STEMMER = Stemmer.Stemmer("english")
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "with",
        "without",
        "w/",
        "x",
        "sq",
        "cu",
        "fl",
    ]
)
UNIT_ALIASES = {
    "in": ("in", "inch", "inches", '"', "''", "in."),
    "ft": ("ft", "foot", "feet", "'", "ft."),
    "gal": ("gal", "gallon", "gallons", "gal."),
    "qt": ("qt", "quart", "quarts"),
    "pt": ("pt", "pint", "pints"),
    "oz": ("oz", "ounce", "ounces", "oz."),
    "lb": ("lb", "lbs", "pound", "pounds", "lb."),
    "v": ("v", "volt", "volts", "vac", "vdc"),
    "amp": ("a", "amp", "amps", "ampere", "amperes"),
    "ah": ("ah", "amp-hour"),
    "w": ("w", "watt", "watts"),
    "mm": ("mm", "millimeter", "millimeters"),
    "cm": ("cm", "centimeter", "centimeters"),
    "sqft": ("sq ft", "sq. ft.", "sq. ft", "sq.ft.", "sq.ft", "sqft", "square feet", "square foot"),
    "cuft": ("cu ft", "cu. ft.", "cu. ft", "cu.ft.", "cu.ft", "cubic feet", "cubic foot"),
    "btu": ("btu", "btus"),
    "gauge": ("gauge", "ga", "ga."),
    "piece": ("pc", "pcs", "piece", "pieces", "pk", "pack", "count", "ct"),
    "hp": ("hp", "horsepower"),
    "psi": ("psi",),
    "cfm": ("cfm",),
    "lumen": ("lumen", "lumens"),
    "k": ("k",),  # colour temperature, 2700k
    "tpi": ("tpi",),
    "grit": ("grit",),
}
_UNIT_OF = {alias: unit for unit, aliases in UNIT_ALIASES.items() for alias in aliases}
_NUMBER = re.compile(r"\d+\s*-\s*\d+/\d+|\d+\s+\d+/\d+|\d+/\d+|\d*\.\d+|\d+")
# What may follow a number as its unit; looked up in the alias table (a big regex
# alternation of every alias is several times slower).
_UNIT_TOKEN = re.compile(
    r"\s*-?\s*(sq\.?\s?ft\.?|cu\.?\s?ft\.?|square f(?:ee|oo)t|cubic f(?:ee|oo)t|amp-hour|[a-z]+\.?|\"|''|')(?![a-z])"
)
_WORD = re.compile(r"[a-z]+")
_VULGAR_FRACTION = re.compile("[\u00bc-\u00be\u2150-\u215e]")  # ¼ ½ ¾ ⅐ … ⅞
# Typographic quotes and primes written after sizes (4” x 6”, 8′) read as the ASCII inch and foot marks.
_SIZE_MARKS = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2033": '"', "\u2018": "'", "\u2019": "'", "\u2032": "'"})


def fold(text: str) -> str:
    """Text as the reranker matches it: lowercased, and beyond ASCII casefolded with accents
    dropped and compatibility forms unified, as the engines' analyzers fold (``Décor`` ->
    ``decor``, ``Straße`` -> ``strasse``, ``ｔｈｅ`` -> ``the``, ``2½`` -> ``2 1/2``). Symbols
    (™ ® ©) separate words, as the engines' tokenizers take them, rather than spell letters."""
    if text.isascii():
        return text.lower()
    text = "".join(" " if unicodedata.category(char) == "So" else char for char in text.translate(_SIZE_MARKS))
    text = _VULGAR_FRACTION.sub(_spelled_fraction, text)
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _spelled_fraction(match: re.Match[str]) -> str:
    # NFKD spells ½ as 1⁄2 with a fraction slash, and would glue it to a number before it ("21⁄2").
    return " " + unicodedata.normalize("NFKD", match.group()).replace("\u2044", "/")


def _unit(token: str) -> str | None:
    token = " ".join(token.split())
    return _UNIT_OF.get(token) or _UNIT_OF.get(token.rstrip("."))


def quantities_in(lowered: str) -> list[tuple[str, str | None]]:
    """(number text, normalised unit or None) for every number in ``lowered``."""
    found = []
    for match in _NUMBER.finditer(lowered):
        unit = _UNIT_TOKEN.match(lowered, match.end())
        found.append((match.group(0), _unit(unit.group(1)) if unit else None))
    return found


def parse_number(raw: str) -> float | None:
    """'1/2' -> 0.5, '6-1/2' and '6 1/2' -> 6.5, '.105' -> 0.105 (rounded to 4 places)."""
    raw = " ".join(raw.split())
    try:
        if "/" in raw:
            whole, _, fraction = raw.replace("-", " ").rpartition(" ")
            numerator, _, denominator = fraction.partition("/")
            value = float(numerator) / float(denominator) + (float(whole) if whole.strip() else 0.0)
            return round(value, 4)
        return round(float(raw), 4)
    except (ValueError, ZeroDivisionError):
        return None


def category_level(category: str | None, depth: int = 2) -> str | None:
    """The category path's first ``depth`` levels, lowercased: what category features compare."""
    if not category:
        return None
    return " > ".join(part.strip().lower() for part in category.split(">")[:depth])


class Analysed(NamedTuple):  # a NamedTuple: built for every new title at serving time, so cheap to make
    text: str  # folded (``fold``), whitespace collapsed
    words: tuple[str, ...]  # letters-only tokens, stop words dropped, in order
    stems: tuple[str, ...]
    stem_set: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    numbers: frozenset[float]
    quantities: frozenset[tuple[float, str]]  # (value, unit)
    units: frozenset[str]
    trigrams: frozenset[str]  # character 3-grams of the words, with word boundaries marked


# Per-word caches: a catalog's vocabulary is small, and serving analyses titles it has
# not seen yet on most queries, so each word is stemmed and split into 3-grams once.
_STEMS: dict[str, str] = {}
_WORD_TRIGRAMS: dict[str, frozenset[str]] = {}
_DIGIT = re.compile(r"\d")


def stem_words(words: list[str]) -> list[str]:
    missing = [w for w in words if w not in _STEMS]
    if missing:
        _STEMS.update(zip(missing, _STEMMER.stemWords(missing), strict=True))
    return [_STEMS[w] for w in words]


def _trigrams(word: str) -> frozenset[str]:
    grams = _WORD_TRIGRAMS.get(word)
    if grams is None:
        padded = f" {word} "
        grams = _WORD_TRIGRAMS[word] = frozenset(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


@lru_cache(maxsize=200_000)
def analyse(text: str) -> Analysed:
    lowered = " ".join(fold(text).split())
    numbers, quantities = set(), set()
    if _DIGIT.search(lowered):
        for raw, unit in quantities_in(lowered):
            value = parse_number(raw)
            if value is None:
                continue
            numbers.add(value)
            if unit:
                quantities.add((value, unit))
    words = [w for w in _WORD.findall(lowered) if w not in STOP_WORDS and w not in _UNIT_OF]
    stems = stem_words(words)
    return Analysed(
        text=lowered,
        words=tuple(words),
        stems=tuple(stems),
        stem_set=frozenset(stems),
        bigrams=frozenset(itertools.pairwise(stems)),
        numbers=frozenset(numbers),
        quantities=frozenset(quantities),
        units=frozenset(unit for _, unit in quantities),
        trigrams=frozenset().union(*(_trigrams(w) for w in words)),
    )
