"""Request and response schemas of the HTTP API (pydantic), also the source of /openapi.json."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from indexer.product import has_visible_character
from relevance.config import MAX_FUSION_WEIGHT
from relevance.errors import RequestError
from relevance.filters import SearchFilters, category_key
from relevance.fusion import FusionMethod, Normalization
from relevance.pipeline import FusionOptions, Mode, RankedProduct

# Bounds that keep a valid request well inside gunicorn's request line (8,190 bytes,
# relevance/server.py) for ordinary text, so a too-long value is refused here, naming
# its field, rather than by gunicorn's own HTML 414.
MAX_FILTER_CHARS = 200
MAX_BRANDS = 20


class NoParams(BaseModel):
    """An endpoint that takes no query parameters."""

    model_config = ConfigDict(extra="forbid")


class Filters(BaseModel):
    """The filter parameters every listing endpoint takes."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    category: str | None = Field(
        None, min_length=1, max_length=MAX_FILTER_CHARS, description="Category path prefix, e.g. 'Furniture > Beds'."
    )
    brand: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILTER_CHARS)]] = Field(
        default_factory=list, max_length=MAX_BRANDS, description="Brand; repeat the parameter for any of several."
    )
    price_min: float | None = Field(None, ge=0, allow_inf_nan=False)
    price_max: float | None = Field(None, ge=0, allow_inf_nan=False)
    in_stock: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Filters:
        # Raised as RequestError (not ValueError) so the error names the field.
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise RequestError(
                f"price_min ({self.price_min}) must not exceed price_max ({self.price_max})",
                field="price_min",
                status=422,
            )
        if self.category is not None:
            try:
                category_key(self.category)
            except ValueError as exc:
                raise RequestError(str(exc), field="category", status=422) from exc
        return self

    def filters(self) -> SearchFilters:
        return SearchFilters(
            category=self.category,
            brand=tuple(self.brand),
            price_min=self.price_min,
            price_max=self.price_max,
            in_stock=self.in_stock,
        )


class Paging(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: int = Field(1, ge=1, le=10_000)
    size: int = Field(10, ge=1, le=100, description="Results per page (at most 100).")


class FilterParams(Filters, Paging):
    """/products/<id>/similar: filters and paging."""


class RankingParams(Filters):
    """How a query is ranked: /search without its paging and output options."""

    q: str = Field(min_length=1, max_length=500, description="The shopper's query.")
    mode: Mode = Field("hybrid", description="hybrid (both lists fused), lexical (BM25 only) or vector (kNN only).")
    fusion: FusionMethod | None = Field(None, description="rrf or linear; default from settings.")
    fusion_backend: Literal["layer", "engine"] | None = Field(
        None, description="layer (default) or engine: the engine's native hybrid search, where it has one (else 501)."
    )
    rrf_k: float | None = Field(None, gt=0, allow_inf_nan=False)
    normalization: Normalization | None = Field(None, description="Score normalisation of the linear blend.")
    lexical_weight: float | None = Field(None, ge=0, le=MAX_FUSION_WEIGHT, allow_inf_nan=False)
    vector_weight: float | None = Field(None, ge=0, le=MAX_FUSION_WEIGHT, allow_inf_nan=False)
    rerank: bool = Field(True, description="Reorder with the active learned model (false: the fused order).")

    @field_validator("q")
    @classmethod
    def _visible_query(cls, value: str) -> str:
        # A zero-width space or a stray BOM is not blank to str.strip; searched, only the
        # vector list would answer it, with arbitrary products.
        if not has_visible_character(value):
            raise ValueError("has no visible character")
        return value

    def fusion_options(self, defaults: FusionOptions) -> FusionOptions:
        overrides = {
            "method": self.fusion,
            "backend": self.fusion_backend,
            "rrf_k": self.rrf_k,
            "normalization": self.normalization,
            "lexical_weight": self.lexical_weight,
            "vector_weight": self.vector_weight,
        }
        fusion = defaults.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        if fusion.method == "linear" and fusion.lexical_weight == fusion.vector_weight == 0:
            # every blended score would be 0: an arbitrary order, not a ranking
            given = "vector_weight" if self.vector_weight is not None else "lexical_weight"
            raise RequestError("a linear blend needs a weight above 0 (both are 0)", field=given, status=422)
        return fusion


class SearchParams(RankingParams, Paging):
    explain: bool = Field(
        False,
        description="Add each result's component scores and ranks, the learned model's feature values and"
        " contributions, and the stage timings.",
    )
    log_features: bool = Field(
        False, description="Log the feature vectors this request was scored with (hybrid mode: the learned stage's)."
    )

    @model_validator(mode="after")
    def _features_need_hybrid(self) -> SearchParams:
        # Features are computed for the fused window; a lexical or vector search has none to log.
        if self.log_features and self.mode != "hybrid":
            raise RequestError(
                f"log_features needs mode=hybrid (features are computed for the fused window), not {self.mode}",
                field="log_features",
                status=422,
            )
        return self


class LearnedExplanation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_version: str
    score: float = Field(description="The model's score: bias + the sum of the contributions.")
    bias: float
    features: dict[str, float | None] = Field(description="Feature values (null: missing).")
    contributions: dict[str, float] = Field(description="Each feature's share of the score (LightGBM pred_contrib).")


class Explanation(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a test validates real responses: no undocumented field
    fused_score: float
    lexical_score: float | None
    lexical_rank: int | None
    vector_score: float | None
    vector_rank: int | None
    learned: LearnedExplanation | None = None


class ProductOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: str
    title: str
    description: str | None = None
    brand: str | None = None
    category: str | None = None
    price: float | None = None
    currency: str | None = None
    rating: float | None = None
    rating_count: int | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    in_stock: bool | None = None
    popularity: float | None = None


class ResultOut(ProductOut):
    rank: int
    score: float
    explain: Explanation | None = None


class SearchResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | None = None
    product_id: str | None = Field(None, description="For /similar: the product whose neighbours these are.")
    mode: str
    fusion: FusionOptions | None = None
    page: int
    size: int
    total: int = Field(description="Results in the fixed window pages are cut from.")
    results: list[ResultOut]
    reranked_by: str | None = Field(None, description="The learned model that ordered the results, if any.")
    corrections: dict[str, str] | None = Field(
        None,
        description="For /search: query words whose stem no product has, and what was searched for each as the"
        " catalog spells it: one word, or the words a run-together word is made of, space-separated"
        ' ("snowblower": "snow blower"; spelling_correction); empty when none.',
    )
    timings_ms: dict[str, float] | None = None


class ListPlacementOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rank: int | None = Field(description="1-based; null: not in the list.")
    score: float | None = Field(description="Its BM25 score or cosine for the query; null: no query term matched.")
    length: int = Field(description="Candidates this retrieval path returned.")
    last_score: float | None = Field(description="The list's last entry's score: what a product had to beat.")


class PlacementResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    product_id: str
    mode: str
    fusion: FusionOptions | None = None
    summary: str = Field(description="One sentence: where the product lands and why.")
    passes_filters: bool
    rank: int | None = Field(description="Its rank in the served ranking (as /search pages it); null: not served.")
    total: int = Field(description="Results in the served ranking.")
    fused_rank: int | None = Field(description="Its rank in the fused list, before the learned model's reordering.")
    fused_score: float | None
    lexical: ListPlacementOut | None = Field(description="The BM25 list; null in vector mode or engine-side fusion.")
    vector: ListPlacementOut | None = Field(description="The kNN list; null in lexical mode or engine-side fusion.")
    reranked_by: str | None
    learned: LearnedExplanation | None = Field(description="The model's view of it, when the model scored it.")
    corrections: dict[str, str]
    product: ProductOut


class ErrorResponse(BaseModel):
    error: str = Field(description="Machine-readable kind, e.g. invalid_request, not_found, index_not_ready.")
    detail: str
    field: str | None = None


class RerankerHealth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["off", "active", "degraded"]
    version: str | None = None
    reason: str | None = None
    predictor: Literal["compiled", "lightgbm"] | None = Field(
        None, description="While a model is active: its trees compiled to native code, or LightGBM's own predictor."
    )
    predictor_detail: str | None = Field(None, description="Why LightGBM predicts, when the compiled trees do not.")


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "ready", "degraded", "not_ready"]
    detail: str | None = None
    index_version: str | None = None
    products: int | None = None
    embedding_model: str | None = None
    query_encoder: str | None = None
    reranker: RerankerHealth | None = None


def result_out(item: RankedProduct, rank: int, explain: bool, learned: dict[str, Any] | None = None) -> dict[str, Any]:
    hit = item.hit
    body = item.product.model_dump() | {"rank": rank, "score": hit.ranking_score}
    if explain:
        body["explain"] = {
            "fused_score": hit.score,
            "lexical_score": hit.lexical_score,
            "lexical_rank": hit.lexical_rank,
            "vector_score": hit.vector_score,
            "vector_rank": hit.vector_rank,
            "learned": learned,
        }
    return body
