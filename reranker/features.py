"""The reranker's features: one registry, one code path for training and serving.

Every feature has a name and a version; a model records the ones it was trained on
and is refused at serving time if they differ. Values are float64 and a feature that
does not apply (no number in the query, no brand on the product) is NaN, which
LightGBM treats as missing the same way in training and in serving.

Per-candidate work is set arithmetic on analyses cached per title (reranker.text), and
the fuzzy scores run vectorised through rapidfuzz over all candidates at once; nothing
here calls the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from indexer.product import Product
from reranker.catalog_stats import CatalogStats, category_level
from reranker.text import Analysed, analyse, stem_words

NAN = float("nan")


@dataclass(frozen=True)
class Feature:
    name: str
    version: int
    description: str


FEATURES: tuple[Feature, ...] = (
    Feature("lexical_score", 1, "BM25 over all fields with the field boosts (NaN: not in the lexical list)"),
    Feature("lexical_rank", 1, "rank in the lexical candidate list (NaN: not in it)"),
    Feature("vector_cosine", 1, "cosine of the query and product embeddings"),
    Feature("vector_rank", 1, "rank in the kNN candidate list (NaN: not in it)"),
    Feature("fused_score", 1, "the layer's fused score"),
    Feature("fused_rank", 1, "position in the fused window"),
    Feature("title_coverage", 1, "share of stemmed query terms in the title"),
    Feature("title_idf_coverage", 1, "idf-weighted share of stemmed query terms in the title"),
    Feature("title_bm25", 1, "BM25 of the query over the title alone (catalog idf)"),
    Feature("corrected_title_coverage", 1, "title coverage after spelling correction against the catalog vocabulary"),
    Feature("brand_coverage", 1, "share of query terms in the brand (NaN: no brand)"),
    Feature("brand_in_query", 1, "all brand terms appear in the query (NaN: no brand)"),
    Feature("category_coverage", 1, "share of query terms in the category path (NaN: no category)"),
    Feature("description_coverage", 1, "share of query terms in the description (NaN: none)"),
    Feature("category_agreement", 1, "P(product's category | query terms), learned from the catalog (NaN: unknown)"),
    Feature("exact_phrase", 1, "the whole query appears in the title"),
    Feature("bigram_coverage", 1, "share of query term bigrams in the title (NaN: one-term query)"),
    Feature("head_term_match", 1, "the query's last word (its head noun, usually) is in the title"),
    Feature("title_head_in_query", 1, "the title's last word (the product type, usually) is in the query"),
    Feature("first_title_term_in_query", 1, "the title's first word (often the brand) is in the query"),
    Feature("number_match", 1, "share of the query's numbers in the title (NaN: none)"),
    Feature("quantity_match", 1, "share of the query's number+unit pairs in the title (NaN: none)"),
    Feature("quantity_conflict", 1, "a query unit appears in the title with another number (NaN: no unit)"),
    Feature("fuzzy_token_set", 1, "rapidfuzz token_set_ratio of query and title / 100"),
    Feature("fuzzy_partial", 1, "rapidfuzz partial_ratio of query and title / 100"),
    Feature("fuzzy_term_best", 1, "mean over query words of their best ratio against a title word / 100"),
    Feature("query_terms", 1, "number of query terms"),
    Feature("title_terms", 1, "number of title terms"),
    Feature("query_has_number", 1, "the query holds a number"),
    Feature("price", 1, "product price (NaN: none)"),
    Feature("rating", 1, "product rating (NaN: none)"),
    Feature("rating_count", 1, "product rating count (NaN: none)"),
    Feature("popularity", 1, "product popularity (NaN: none)"),
    Feature("trigram_dice", 1, "Dice overlap of query and title character 3-grams (misspellings, compounds)"),
    Feature("trigram_containment", 1, "share of the query's character 3-grams found in the title"),
    Feature("head_term_position", 1, "where the query's head word sits in the title: 1 = last word (NaN: absent)"),
    Feature("query_brand_match", 1, "share of the query's brand words in the title or brand (NaN: none)"),
    Feature("query_brand_conflict", 1, "the query names a brand and the product is another brand (NaN: unknown)"),
    # Relative to the other candidates of the same list: raw scores vary a lot between queries.
    Feature("list_size", 1, "candidates being reranked (a window of ~200, or a given candidate set)"),
    Feature("lexical_ratio", 1, "BM25 score / the list's best BM25 score (NaN: not in the lexical list)"),
    Feature("cosine_gap", 1, "the list's best cosine minus this candidate's"),
    Feature("cosine_z", 1, "cosine as a z-score within the list"),
    Feature("title_coverage_gap", 1, "the list's best title coverage minus this candidate's"),
    Feature("fuzzy_term_gap", 1, "the list's best fuzzy_term_best minus this candidate's"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_SPEC: dict[str, int] = {f.name: f.version for f in FEATURES}
BM25_K1, BM25_B, TITLE_AVG_TERMS = 1.2, 0.75, 10.0


@dataclass(frozen=True)
class Candidate:
    """One product to score for one query, with what retrieval already knows about it."""

    product: Product
    fused_score: float
    fused_rank: int
    lexical_score: float | None = None
    lexical_rank: int | None = None
    vector_rank: int | None = None
    cosine: float | None = None


def _share(part: int, whole: int) -> float:
    return part / whole if whole else NAN


def compute_features(query: str, candidates: Sequence[Candidate], stats: CatalogStats) -> np.ndarray:
    """The (len(candidates), len(FEATURES)) matrix, columns in FEATURE_NAMES order."""
    if not candidates:
        return np.zeros((0, len(FEATURES)))
    q = analyse(query)
    q_stems = list(dict.fromkeys(q.stems))
    corrected = list(dict.fromkeys(stem_words([stats.correct(word) for word in q.words])))
    idf = {stem: stats.idf(stem) for stem in q_stems}
    idf_total = sum(idf.values())
    category_prior = _category_prior(q_stems, stats)
    head = q.stems[-1] if q.stems else None
    titles = [c.product.title for c in candidates]
    token_set = process.cdist([q.text], titles, scorer=fuzz.token_set_ratio, dtype=np.float64)[0] / 100
    partial = process.cdist([q.text], titles, scorer=fuzz.partial_ratio, dtype=np.float64)[0] / 100
    term_best = _fuzzy_term_best(q, [analyse(t) for t in titles])

    n_query, n_corrected = len(q_stems), len(corrected)
    n_bigrams, n_numbers, n_quantities = len(q.bigrams), len(q.numbers), len(q.quantities)
    n_trigrams = len(q.trigrams)
    norm = BM25_K1 * (1 - BM25_B)
    per_length = BM25_K1 * BM25_B / TITLE_AVG_TERMS
    text_columns = []  # per candidate, the title-matching features, in FEATURES order
    for candidate in candidates:
        t = analyse(candidate.product.title)
        stems = t.stem_set
        matched_idf = [idf[s] for s in q_stems if s in stems]
        text_columns.append(
            (
                len(matched_idf) / n_query if n_query else NAN,
                sum(matched_idf) / idf_total if idf_total else NAN,
                sum(matched_idf) * (BM25_K1 + 1) / (1 + norm + per_length * len(t.stems)),
                sum(s in stems for s in corrected) / n_corrected if n_corrected else NAN,
                float(bool(q.text) and q.text in t.text),
                len(q.bigrams & t.bigrams) / n_bigrams if n_bigrams else NAN,
                NAN if head is None else float(head in stems),
                float(bool(t.stems) and t.stems[-1] in q.stem_set),
                float(bool(t.stems) and t.stems[0] in q.stem_set),
                len(q.numbers & t.numbers) / n_numbers if n_numbers else NAN,
                len(q.quantities & t.quantities) / n_quantities if n_quantities else NAN,
                _quantity_conflict(q, t),
                float(len(t.stems)),
                2 * len(q.trigrams & t.trigrams) / (len(q.trigrams) + len(t.trigrams)) if t.trigrams else 0.0,
                len(q.trigrams & t.trigrams) / n_trigrams if n_trigrams else NAN,
                _head_position(head, t.stems),
            )
        )
    text = np.array(text_columns, dtype=np.float64).reshape(len(candidates), 16)
    fields = np.array([_field_coverage(q_stems, c.product) for c in candidates], dtype=np.float64).reshape(-1, 4)
    category_keys = [category_level(c.product.category) if category_prior else None for c in candidates]

    def column(values: Sequence[float | None]) -> np.ndarray:
        return np.array(values, dtype=np.float64)  # None becomes NaN

    columns = {
        "lexical_score": column([c.lexical_score for c in candidates]),
        "lexical_rank": column([c.lexical_rank for c in candidates]),
        "vector_cosine": column([c.cosine for c in candidates]),
        "vector_rank": column([c.vector_rank for c in candidates]),
        "fused_score": column([c.fused_score for c in candidates]),
        "fused_rank": column([c.fused_rank for c in candidates]),
        "title_coverage": text[:, 0],
        "title_idf_coverage": text[:, 1],
        "title_bm25": text[:, 2],
        "corrected_title_coverage": text[:, 3],
        "brand_coverage": fields[:, 0],
        "brand_in_query": fields[:, 1],
        "category_coverage": fields[:, 2],
        "description_coverage": fields[:, 3],
        "category_agreement": column([category_prior.get(k, 0.0) if k else None for k in category_keys]),
        "exact_phrase": text[:, 4],
        "bigram_coverage": text[:, 5],
        "head_term_match": text[:, 6],
        "title_head_in_query": text[:, 7],
        "first_title_term_in_query": text[:, 8],
        "number_match": text[:, 9],
        "quantity_match": text[:, 10],
        "quantity_conflict": text[:, 11],
        "fuzzy_token_set": token_set,
        "fuzzy_partial": partial,
        "fuzzy_term_best": term_best,
        "query_terms": np.full(len(candidates), float(n_query)),
        "title_terms": text[:, 12],
        "trigram_dice": text[:, 13],
        "trigram_containment": text[:, 14],
        "head_term_position": text[:, 15],
        "query_has_number": np.full(len(candidates), float(bool(q.numbers))),
        "price": column([c.product.price for c in candidates]),
        "rating": column([c.product.rating for c in candidates]),
        "rating_count": column([c.product.rating_count for c in candidates]),
        "popularity": column([c.product.popularity for c in candidates]),
    }
    columns.update(_brand_agreement(q, candidates, stats))
    columns.update(_relative_to_list(columns))
    return np.column_stack([columns[name] for name in FEATURE_NAMES])


def _brand_agreement(q: Analysed, candidates: Sequence[Candidate], stats: CatalogStats) -> dict[str, np.ndarray]:
    brands = stats.brand_set()
    named = set(q.words) & brands
    size = len(candidates)
    if not named:
        return {"query_brand_match": np.full(size, NAN), "query_brand_conflict": np.full(size, NAN)}
    match, conflict = [], []
    for candidate in candidates:
        title = analyse(candidate.product.title)
        if candidate.product.brand:
            product_brand = set(analyse(candidate.product.brand).words)
        else:
            product_brand = {title.words[0]} & brands if title.words else set()
        found = named & (set(title.words) | product_brand)
        match.append(len(found) / len(named))
        conflict.append(NAN if not product_brand else float(not (named & product_brand)))
    return {"query_brand_match": np.asarray(match), "query_brand_conflict": np.asarray(conflict)}


def _relative_to_list(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    size = len(columns["fused_rank"])
    with np.errstate(invalid="ignore", divide="ignore"):
        lexical, cosine = columns["lexical_score"], columns["vector_cosine"]
        best_lexical = np.nanmax(lexical) if np.any(~np.isnan(lexical)) else np.nan
        known = cosine[~np.isnan(cosine)]
        spread = known.std() if known.size else 0.0
        return {
            "list_size": np.full(size, float(size)),
            "lexical_ratio": lexical / best_lexical if best_lexical and best_lexical > 0 else np.full(size, np.nan),
            "cosine_gap": (known.max() - cosine) if known.size else np.full(size, np.nan),
            "cosine_z": (cosine - known.mean()) / spread if spread > 0 else np.where(np.isnan(cosine), np.nan, 0.0),
            "title_coverage_gap": _gap(columns["title_coverage"]),
            "fuzzy_term_gap": _gap(columns["fuzzy_term_best"]),
        }


def _gap(values: np.ndarray) -> np.ndarray:
    if not np.any(~np.isnan(values)):
        return np.full(len(values), np.nan)
    return np.nanmax(values) - values


def _field_coverage(q_stems: list[str], product: Product) -> tuple[float, float, float, float]:
    """Brand coverage, brand in query, category coverage, description coverage; NaN where absent."""
    brand_values = (NAN, NAN)
    if product.brand:
        brand = analyse(product.brand)
        brand_values = (
            _share(sum(s in brand.stem_set for s in q_stems), len(q_stems)),
            float(bool(brand.stems) and brand.stem_set <= set(q_stems)),
        )
    category = NAN
    if product.category:
        category_terms = analyse(product.category.replace(">", " "))
        category = _share(sum(s in category_terms.stem_set for s in q_stems), len(q_stems))
    description = NAN
    if product.description:
        description_terms = analyse(product.description[:2000])
        description = _share(sum(s in description_terms.stem_set for s in q_stems), len(q_stems))
    return (*brand_values, category, description)


def _head_position(head: str | None, title_stems: tuple[str, ...]) -> float:
    if head is None or head not in title_stems:
        return NAN
    last = len(title_stems) - 1 - title_stems[::-1].index(head)
    return (last + 1) / len(title_stems)


def _quantity_conflict(q: Analysed, t: Analysed) -> float:
    if not q.units:
        return NAN
    for value, unit in q.quantities:
        title_values = {v for v, u in t.quantities if u == unit}
        if title_values and value not in title_values:
            return 1.0
    return 0.0


def _category_prior(q_stems: list[str], stats: CatalogStats) -> dict[str, float]:
    prior: dict[str, float] = {}
    known = [stats.term_categories[s] for s in q_stems if s in stats.term_categories]
    for distribution in known:
        for category, p in distribution.items():
            prior[category] = prior.get(category, 0.0) + p / len(known)
    return prior


def _fuzzy_term_best(q: Analysed, titles: list[Analysed]) -> np.ndarray:
    """Per title: mean over query words of the best rapidfuzz ratio against the title's words."""
    if not q.words:
        return np.full(len(titles), NAN)
    vocabulary = sorted({word for t in titles for word in t.words})
    if not vocabulary:
        return np.zeros(len(titles))
    matrix = process.cdist(list(q.words), vocabulary, scorer=fuzz.ratio, dtype=np.float64) / 100
    # Plain Python over small lists: per-title numpy calls cost more than the arithmetic.
    best_of = [dict(zip(vocabulary, row, strict=True)) for row in matrix.tolist()]
    best = []
    for t in titles:
        if not t.words:
            best.append(0.0)
            continue
        best.append(sum(max(scores[w] for w in t.words) for scores in best_of) / len(best_of))
    return np.asarray(best)
