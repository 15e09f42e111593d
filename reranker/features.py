"""The reranker's features: one registry, one code path for training and serving.

Every feature has a name and a version; a model records the ones it was trained on
and is refused at serving time if they differ. Values are float64 and a feature that
does not apply (no number in the query, no brand on the product) is NaN, which
LightGBM treats as missing the same way in training and in serving.

Products arrive analysed (reranker.product_texts: term ids per product, computed by the
index job), so per-candidate work is compiled loops over the candidates' slices of that
table (reranker.kernels) and numpy over the results, and the fuzzy scores run through
rapidfuzz over all candidates at once; nothing here calls the engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

import numpy as np
from rapidfuzz import fuzz, process

from indexer.product import Product
from reranker.catalog_stats import CatalogStats
from reranker.judged_categories import EMPTY, JudgedCategories
from reranker.product_texts import BIGRAM_SHIFT, OPTIONAL_TEXT_FIELDS, RAGGED_FIELDS, UNIT_IDS, Rows, TextBatch
from reranker.text import Analysed, analyse, fold, stem_words

NAN = float("nan")


@dataclass(frozen=True)
class Feature:
    name: str
    version: int
    description: str


# Every feature that reads text is at version 2 or more since text is folded beyond ASCII (reranker.text.fold).
FEATURES: tuple[Feature, ...] = (
    Feature("lexical_score", 1, "BM25 over all fields with the field boosts (NaN: not in the lexical list)"),
    Feature("lexical_rank", 1, "rank in the lexical candidate list (NaN: not in it)"),
    Feature("vector_cosine", 1, "cosine of the query and product embeddings"),
    Feature("vector_rank", 1, "rank in the kNN candidate list (NaN: not in it)"),
    Feature("fused_score", 1, "the layer's fused score"),
    Feature("fused_rank", 1, "position in the fused window"),
    Feature("title_coverage", 2, "share of stemmed query terms in the title"),
    Feature("title_idf_coverage", 2, "idf-weighted share of stemmed query terms in the title"),
    Feature("title_bm25", 2, "BM25 of the query over the title alone (catalog idf)"),
    Feature("corrected_title_coverage", 3, "title coverage after spelling correction against the catalog vocabulary"),
    Feature("brand_coverage", 2, "share of query terms in the brand (NaN: no brand)"),
    Feature("brand_in_query", 2, "all brand terms appear in the query (NaN: no brand)"),
    Feature("category_coverage", 2, "share of query terms in the category path (NaN: no category)"),
    Feature("description_coverage", 2, "share of query terms in the description (NaN: none)"),
    Feature("brand_bm25", 2, "BM25 of the query over the brand alone (brand-field idf; NaN: no brand)"),
    Feature("category_bm25", 2, "BM25 of the query over the category path alone (category idf; NaN: none)"),
    Feature("description_bm25", 2, "BM25 of the query over the description alone (description idf; NaN: none)"),
    Feature("category_agreement", 2, "P(product's category | query terms), learned from the catalog (NaN: unknown)"),
    Feature(
        "judged_category_agreement",
        2,
        "P(product's category | query terms), learned from the model's training judgments (NaN: unknown)",
    ),
    Feature("exact_phrase", 2, "the whole query appears in the title"),
    Feature("bigram_coverage", 2, "share of query term bigrams in the title (NaN: one-term query)"),
    Feature("head_term_match", 2, "the query's last word (its head noun, usually) is in the title"),
    Feature("title_head_in_query", 2, "the title's last word (the product type, usually) is in the query"),
    Feature("first_title_term_in_query", 2, "the title's first word (often the brand) is in the query"),
    Feature("number_match", 2, "share of the query's numbers in the title (NaN: none)"),
    Feature("quantity_match", 2, "share of the query's number+unit pairs in the title (NaN: none)"),
    Feature("quantity_conflict", 2, "a query unit appears in the title with another number (NaN: no unit)"),
    Feature("fuzzy_term_best", 2, "mean over query words of their best ratio against a title word / 100"),
    Feature("query_terms", 2, "number of query terms"),
    Feature("title_terms", 2, "number of title terms"),
    Feature("query_has_number", 2, "the query holds a number"),
    Feature("price", 1, "product price (NaN: none)"),
    Feature("rating", 1, "product rating (NaN: none)"),
    Feature("rating_count", 1, "product rating count (NaN: none)"),
    Feature("popularity", 1, "product popularity (NaN: none)"),
    Feature("trigram_dice", 2, "Dice overlap of query and title character 3-grams (misspellings, compounds)"),
    Feature("trigram_containment", 2, "share of the query's character 3-grams found in the title"),
    Feature("head_term_position", 2, "where the query's head word sits in the title: 1 = last word (NaN: absent)"),
    Feature("query_brand_match", 2, "share of the query's brand words in the title or brand (NaN: none)"),
    Feature("query_brand_conflict", 2, "the query names a brand and the product is another brand (NaN: unknown)"),
    # Relative to the other candidates of the same list: raw scores vary a lot between queries.
    Feature("list_size", 1, "candidates being reranked (a window of ~200, or a given candidate set)"),
    Feature("lexical_ratio", 1, "BM25 score / the list's best BM25 score (NaN: not in the lexical list)"),
    Feature("cosine_gap", 1, "the list's best cosine minus this candidate's"),
    Feature("cosine_z", 1, "cosine as a z-score within the list"),
    Feature("title_coverage_gap", 2, "the list's best title coverage minus this candidate's"),
    Feature("fuzzy_term_gap", 2, "the list's best fuzzy_term_best minus this candidate's"),
)
# Per optional text field, a feature that is NaN exactly when the product lacks the field.
FIELD_FEATURES = {field: f"{field}_coverage" for field in OPTIONAL_TEXT_FIELDS}
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_SPEC: dict[str, int] = {f.name: f.version for f in FEATURES}
BM25_K1, BM25_B, TITLE_AVG_TERMS = 1.2, 0.75, 10.0


class Candidate(NamedTuple):  # a NamedTuple: 200 are built per reranked search
    """One product to score for one query, with what retrieval already knows about it."""

    product: Product
    fused_score: float
    fused_rank: int
    lexical_score: float | None = None
    lexical_rank: int | None = None
    vector_rank: int | None = None
    cosine: float | None = None


# The features named by Candidate's fields after the product, in its field order.
_RETRIEVAL_COLUMNS = tuple("vector_cosine" if f == "cosine" else f for f in Candidate._fields[1:])
_PRODUCT_COLUMNS = ("price", "rating", "rating_count", "popularity")


def compute_features(
    query: str, candidates: Sequence[Candidate], stats: CatalogStats, judged: JudgedCategories = EMPTY
) -> np.ndarray:
    """The (len(candidates), len(FEATURES)) matrix, columns in FEATURE_NAMES order.

    ``judged``: what the scoring model learned from its judgments (serving: the model's
    table; training: the table without the query's fold).
    """
    if not candidates:
        return np.zeros((0, len(FEATURES)))
    q = analyse(query)
    by_field = list(zip(*candidates, strict=True))  # Candidate's fields as columns, the products first
    products = by_field[0]
    # First: analysing products the table lacks may add ids the query lookups below need.
    batch = stats.texts.batch(products, stats.brand_set())
    q_stems = list(dict.fromkeys(q.stems))
    q_ids = [stats.texts.stems.get(s) for s in q_stems]
    columns = _title_features(q, q_stems, q_ids, products, batch, stats)
    columns.update(_field_features(q, q_stems, q_ids, batch, stats, judged))

    columns.update((name, _float_column(values)) for name, values in zip(_RETRIEVAL_COLUMNS, by_field[1:], strict=True))
    columns.update((name, _float_column(list(map(attrgetter(name), products)))) for name in _PRODUCT_COLUMNS)
    columns.update(_relative_to_list(columns))
    # One (features, n) array transposed: ~3x cheaper than column_stack's per-column reshapes.
    return np.ascontiguousarray(np.array([columns[name] for name in FEATURE_NAMES], dtype=np.float64).T)


def _bm25(matched_idf: np.ndarray, n_terms: np.ndarray, average_terms: float) -> np.ndarray:
    """BM25 with each matched term counted once (the text table keeps a field's distinct stems)."""
    norm, per_length = BM25_K1 * (1 - BM25_B), BM25_K1 * BM25_B / average_terms
    return matched_idf * (BM25_K1 + 1) / (1 + norm + per_length * n_terms)


def _float_column(values: Sequence[float | None]) -> np.ndarray:
    """float64, None as NaN. numpy converts a None ~5x slower than a float; most columns hold none or only None."""
    if values[0] is None and values.count(None) == len(values):  # a field the catalog lacks: no per-value work
        return np.full(len(values), NAN)
    if None not in values:
        return np.array(values, dtype=np.float64)
    return np.fromiter((NAN if v is None else v for v in values), dtype=np.float64, count=len(values))


def _contains(rows: Rows, wanted: Sequence[float], size: int) -> np.ndarray:
    """(size, len(wanted)) booleans: whether each product's values include each wanted value."""
    found = np.zeros((size, len(wanted)), dtype=bool)
    for j, value in enumerate(wanted):
        found[rows.owner[rows.values == value], j] = True
    return found


def _matches(batch: TextBatch, field: str, wanted: Sequence[float], weights: np.ndarray | None = None) -> np.ndarray:
    """Per product: how many of the (distinct) wanted values its (distinct) ``field`` values include, or their weight."""
    return _hits(batch, field, [(wanted, weights)])[0]


def _hits(batch: TextBatch, field: str, columns: Sequence[tuple[Sequence[float], np.ndarray | None]]) -> np.ndarray:
    """``_matches`` of several (wanted values, weights) over one field, in one pass: (columns, products).

    A wanted value listed twice in a column counts once, with its last weight; in a
    vocabulary-id field, -1 (not in the vocabulary) matches nothing.
    """
    is_id = RAGGED_FIELDS[field] is np.int32
    weighted = []
    for wanted, weights in columns:
        weights = [1.0] * len(wanted) if weights is None else np.asarray(weights, dtype=np.float64).tolist()
        weighted.append(dict(zip(wanted, weights, strict=True)))
    union = sorted({value for column in weighted for value in column if not (is_id and value < 0)})
    slot = {value: i for i, value in enumerate(union)}
    table = np.zeros((len(columns), len(union)))
    for row, column in enumerate(weighted):
        for value, weight in column.items():
            if value in slot:
                table[row, slot[value]] = weight
    return batch.sorted_hits(field, np.array(union, dtype=RAGGED_FIELDS[field]), table)


def _among(values: np.ndarray, wanted: Sequence[int]) -> np.ndarray:
    """``np.isin`` for a handful of wanted values, without its sorting."""
    return (values[:, None] == np.asarray(wanted, dtype=values.dtype)[None, :]).any(axis=1)


def _share_of(matched: np.ndarray, whole: int) -> np.ndarray:
    return matched / whole if whole else np.full(len(matched), NAN)


def _title_features(
    q: Analysed,
    q_stems: list[str],
    q_ids: list[int],
    products: Sequence[Product],
    batch: TextBatch,
    stats: CatalogStats,
) -> dict:
    """Title matches; ``q_stems`` are the query's distinct stems, ``q_ids`` their ids (-1: unknown)."""
    size, texts = batch.size, stats.texts
    corrected_words = [part for word in q.words for part in stats.correct(word).split()]  # splits: several
    corrected = list(dict.fromkeys(stem_words(corrected_words)))
    idf = np.array([stats.idf(stem) for stem in q_stems])
    idf_total = float(idf.sum())
    n_stems = batch.lengths("stems").astype(np.float64)
    head = texts.stems.get(q.stems[-1]) if q.stems else None
    matched, matched_idf, matched_corrected, head_hits = _hits(
        batch,
        "stem_set",
        [
            (q_ids, None),
            (q_ids, idf),
            ([texts.stems.get(s) for s in corrected], None),
            ([] if head is None else [head], None),
        ],
    )
    has_stems = n_stems > 0
    first_stem, last_stem = batch.ends("stems")

    bigram_codes = [
        texts.stems.get(a) << BIGRAM_SHIFT | texts.stems.get(b)
        for a, b in q.bigrams
        if texts.stems.get(a) >= 0 and texts.stems.get(b) >= 0
    ]
    trigram_ids = [texts.trigrams.get(g) for g in q.trigrams]
    matched_trigrams = _matches(batch, "trigrams", trigram_ids)
    n_title_trigrams = batch.lengths("trigrams")
    titles = [p.title for p in products]
    phrase = _holds_phrase(titles, q.text)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "title_coverage": _share_of(matched, len(q_stems)),
            "title_idf_coverage": matched_idf / idf_total if idf_total else np.full(size, NAN),
            "title_bm25": _bm25(matched_idf, n_stems, TITLE_AVG_TERMS),
            "corrected_title_coverage": _share_of(matched_corrected, len(corrected)),
            "exact_phrase": phrase,
            "bigram_coverage": _share_of(_matches(batch, "bigrams", bigram_codes), len(q.bigrams)),
            "head_term_match": (np.full(size, NAN) if head is None else (head_hits > 0).astype(np.float64)),
            "title_head_in_query": (has_stems & _among(last_stem, q_ids)).astype(np.float64),
            "first_title_term_in_query": (has_stems & _among(first_stem, q_ids)).astype(np.float64),
            "number_match": _share_of(_matches(batch, "numbers", sorted(q.numbers)), len(q.numbers)),
            **_quantity_features(q, batch),
            "fuzzy_term_best": _fuzzy_term_best(q, batch, texts.words.items),
            "query_terms": np.full(size, float(len(q_stems))),
            "title_terms": n_stems,
            "query_has_number": np.full(size, float(bool(q.numbers))),
            "trigram_dice": np.where(
                n_title_trigrams > 0, 2 * matched_trigrams / (len(q.trigrams) + n_title_trigrams), 0.0
            ),
            "trigram_containment": _share_of(matched_trigrams, len(q.trigrams)),
            "head_term_position": _head_position(head, batch, n_stems),
        }


_TITLE_SEPARATOR = "\x00"  # not whitespace, so a phrase match never spans two titles; a phrase never holds it
# (a title may: the catalog takes any title with a visible character, so that case is checked)
# What ``\s+`` matches besides a single space (str.isspace's ASCII characters; non-ASCII text is checked apart).
_OTHER_WHITESPACE = ("  ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def _holds_phrase(titles: list[str], phrase: str) -> np.ndarray:
    """Per title: ``phrase`` (folded, single-spaced) appears in the folded title, a space matching any whitespace.

    One search over all titles joined (testing each title on its own cost ~2.5 µs a
    title), and no collapsing of their whitespace, which cost more than the search.
    """
    found = np.zeros(len(titles))
    if not phrase or _TITLE_SEPARATOR in phrase:
        return found
    # Folded title by title: one accented title sends only itself down fold's slow path, not the
    # whole joined window (2.4 ms against 0.06 ms for 200 titles).
    folded = [fold(title) for title in titles]
    joined = _TITLE_SEPARATOR.join(folded)
    if joined.count(_TITLE_SEPARATOR) != len(titles) - 1:  # a title holds the separator: each on its own
        return np.array([1.0 if _phrase_positions(title, phrase) else 0.0 for title in folded])
    positions = _phrase_positions(joined, phrase)
    if positions:  # folding can change a title's length, so measure the folded ones
        starts = np.cumsum([0] + [len(title) + 1 for title in folded])
        found[np.searchsorted(starts, positions, side="right") - 1] = 1.0
    return found


def _phrase_positions(text: str, phrase: str) -> list[int]:
    """Where ``phrase`` starts in ``text``, a space in it matching any run of whitespace."""
    if text.isascii() and not any(other in text for other in _OTHER_WHITESPACE):
        # Every whitespace run is one space, so the phrase matches literally; str.find is ~10x faster than the regex.
        positions, at = [], text.find(phrase)
        while at >= 0:
            positions.append(at)
            at = text.find(phrase, at + len(phrase))
        return positions
    return [match.start() for match in re.finditer(r"\s+".join(map(re.escape, phrase.split(" "))), text)]


def _quantity_features(q: Analysed, batch: TextBatch) -> dict[str, np.ndarray]:
    size = batch.size
    if not q.quantities:  # no number with a unit in the query: not applicable
        return {"quantity_match": np.full(size, NAN), "quantity_conflict": np.full(size, NAN)}
    values, units = batch["quantity_values"], batch["quantity_units"]
    has_value = np.zeros((size, len(q.quantities)), dtype=bool)
    has_unit = np.zeros((size, len(q.quantities)), dtype=bool)
    for j, (value, unit) in enumerate(sorted(q.quantities)):
        same_unit = units.values == UNIT_IDS[unit]
        has_unit[units.owner[same_unit], j] = True
        has_value[values.owner[same_unit & (values.values == value)], j] = True
    conflict = (has_unit & ~has_value).any(axis=1).astype(np.float64) if q.units else np.full(size, NAN)
    return {"quantity_match": _share_of(has_value.sum(axis=1), len(q.quantities)), "quantity_conflict": conflict}


def _head_position(head: int | None, batch: TextBatch, n_stems: np.ndarray) -> np.ndarray:
    """Where the head word's last occurrence sits in the title, 1 = last word; NaN where absent."""
    if head is None:
        return np.full(batch.size, NAN)
    last = batch.last_position("stems", head)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(last >= 0, (last + 1) / n_stems, NAN)


def _fuzzy_term_best(q: Analysed, batch: TextBatch, vocabulary: list[str]) -> np.ndarray:
    """Per title: mean over query words of the best rapidfuzz ratio against the title's words."""
    if not q.words:
        return np.full(batch.size, NAN)
    distinct = batch.distinct("words")
    if not distinct.size:
        return np.zeros(batch.size)
    scores = process.cdist(
        list(q.words), [vocabulary[i] for i in distinct.tolist()], scorer=fuzz.ratio, dtype=np.float64
    )
    return batch.mean_best_score("words", distinct, scores / 100)


def _field_features(
    q: Analysed, q_stems: list[str], q_ids: list[int], batch: TextBatch, stats: CatalogStats, judged: JudgedCategories
) -> dict[str, np.ndarray]:
    """Brand, category and description matches (NaN where the product lacks the field)."""
    size = batch.size

    def coverage(field: str, present: np.ndarray) -> np.ndarray:
        if not present.any():
            return np.full(size, NAN)
        return np.where(present, _share_of(_matches(batch, field, q_ids), len(q_stems)), NAN)

    def bm25(field: str, present: np.ndarray) -> np.ndarray:
        if not present.any():
            return np.full(size, NAN)
        terms = stats.field_terms(field)
        matched_idf = _matches(batch, f"{field}_stems", q_ids, terms.idf(q_stems))
        return np.where(present, _bm25(matched_idf, batch.lengths(f"{field}_stems"), terms.average_terms), NAN)

    has_brand, category_key = batch.scalar("has_brand"), batch.scalar("category_key")
    brand_in_query = np.full(size, NAN)
    if has_brand.any():
        lengths, in_query = batch.lengths("brand_stems"), _matches(batch, "brand_stems", q_ids)
        brand_in_query = np.where(has_brand, ((lengths > 0) & (in_query == lengths)).astype(float), NAN)
    columns = {
        "brand_coverage": coverage("brand_stems", has_brand),
        "brand_in_query": brand_in_query,
        "category_coverage": coverage("category_stems", batch.scalar("has_category")),
        "description_coverage": coverage("description_stems", batch.scalar("has_description")),
        "category_agreement": _category_agreement(q_stems, category_key, stats.term_categories, stats),
        "judged_category_agreement": _category_agreement(q_stems, category_key, judged.term_categories, stats),
    }
    columns.update((f"{field}_bm25", bm25(field, batch.scalar(f"has_{field}"))) for field in OPTIONAL_TEXT_FIELDS)
    columns.update(_brand_agreement(q, batch, stats))
    return columns


def _category_agreement(
    q_stems: list[str], category_key: np.ndarray, term_categories: dict[str, dict[str, float]], stats: CatalogStats
) -> np.ndarray:
    """Per product: the mean over the query's known stems of P(its category | stem) in ``term_categories``."""
    prior: dict[str, float] = {}
    known = [term_categories[s] for s in q_stems if s in term_categories]
    for distribution in known:
        for category, p in distribution.items():
            prior[category] = prior.get(category, 0.0) + p / len(known)
    if not prior:
        return np.full(len(category_key), NAN)
    by_id = np.zeros(len(stats.texts.categories.items) + 1)
    for category, p in prior.items():
        found = stats.texts.categories.get(category)
        if found >= 0:
            by_id[found] = p
    return np.where(category_key >= 0, by_id[np.maximum(category_key, 0)], NAN)


def _brand_agreement(q: Analysed, batch: TextBatch, stats: CatalogStats) -> dict[str, np.ndarray]:
    """Does the product carry the brand the query names (in its brand field or title)?"""
    named = sorted(set(q.words) & stats.brand_set())
    size = batch.size
    if not named:
        return {"query_brand_match": np.full(size, NAN), "query_brand_conflict": np.full(size, NAN)}
    ids = [stats.texts.words.get(word) for word in named]
    in_brand = _contains(batch["brand_words"], ids, size)
    found = _contains(batch["words"], ids, size) | in_brand
    conflict = np.where(batch.lengths("brand_words") > 0, (~in_brand.any(axis=1)).astype(np.float64), NAN)
    return {"query_brand_match": found.sum(axis=1) / len(named), "query_brand_conflict": conflict}


def _relative_to_list(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    size = len(columns["fused_rank"])
    with np.errstate(invalid="ignore", divide="ignore"):
        lexical, cosine = columns["lexical_score"], columns["vector_cosine"]
        best_lexical = _best(lexical)
        unknown = np.isnan(cosine)
        known = cosine[~unknown] if unknown.any() else cosine
        spread = known.std() if known.size else 0.0
        return {
            "list_size": np.full(size, float(size)),
            "lexical_ratio": lexical / best_lexical if best_lexical and best_lexical > 0 else np.full(size, np.nan),
            "cosine_gap": (known.max() - cosine) if known.size else np.full(size, np.nan),
            "cosine_z": (cosine - known.mean()) / spread if spread > 0 else np.where(np.isnan(cosine), np.nan, 0.0),
            "title_coverage_gap": _gap(columns["title_coverage"]),
            "fuzzy_term_gap": _gap(columns["fuzzy_term_best"]),
        }


def _best(values: np.ndarray) -> float:
    """The largest value ignoring NaN, NaN when all are: np.nanmax without its copy and all-NaN warning."""
    return float(np.fmax.reduce(values)) if len(values) else np.nan


def _gap(values: np.ndarray) -> np.ndarray:
    return _best(values) - values  # all NaN when every value is
