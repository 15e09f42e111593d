"""Typed settings, declared once.

Precedence: defaults < TOML file (``RELEVANCE_CONFIG_FILE`` or ``--config``) <
``RELEVANCE_*`` environment variables < explicit overrides. Unknown keys fail at
start with a message naming the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

from relevance.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
PRODUCT_TEXT_FIELDS = ("title", "brand", "category", "description")
# Linear-blend weights are relative; the cap keeps the blend finite (its inputs are
# normalised, so bounded; a weight of 1e308 overflowed to inf, which JSON cannot carry)
# while allowing any ratio a blend needs.
MAX_FUSION_WEIGHT = 1000.0


class FieldBoosts(BaseModel):
    """Lexical weight of each text field (title > brand > category > description)."""

    model_config = ConfigDict(extra="forbid")

    title: float = Field(3.0, ge=0)
    brand: float = Field(2.0, ge=0)
    category: float = Field(1.5, ge=0)
    description: float = Field(1.0, ge=0)


BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "models" / "default"


class Settings(BaseSettings):
    """Every setting of the layer. Environment variables use the ``RELEVANCE_`` prefix
    and ``__`` for nesting (``RELEVANCE_FIELD_BOOSTS__TITLE=4``)."""

    model_config = SettingsConfigDict(
        env_prefix="RELEVANCE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(Path("var"), description="Where indexes, the embedding cache and dead letters live.")
    engine: Literal["embedded", "elasticsearch", "opensearch"] = Field(
        "embedded", description="Search engine behind the layer."
    )
    engine_url: str = Field("http://127.0.0.1:9200", description="Elasticsearch/OpenSearch URL (server engines only).")
    engine_timeout: float = Field(2.0, gt=0, description="Seconds before a server request fails with a 503.")
    index_alias: str = Field("products", pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Alias that serves searches.")
    keep_versions: int = Field(3, ge=1, description="Index versions kept for rollback after a swap.")

    embedding_model: str = Field(
        DEFAULT_MODEL, description="'all-MiniLM-L6-v2' (bundled, offline) or a local sentence-transformers path."
    )
    embedding_fields: list[str] = Field(
        ["title", "brand", "category"], description="Product fields, in order, that make the embedded text."
    )
    embedding_batch_size: int = Field(64, ge=1)
    embedding_batch_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Product batches in bfloat16 where the CPU has native bf16 ('auto'), or forced."
    )
    embedding_query_backend: Literal["onnx", "torch"] = Field(
        "onnx", description="Run single queries through an ONNX export of the model (~3x faster than torch)."
    )
    embedding_query_precision: Literal["int8", "float32"] = Field(
        "int8",
        description="ONNX query encoder with int8 matrix weights (2x faster, same kNN relevance measured) or float32.",
    )
    embedding_max_seq_length: int = Field(128, ge=8, le=512)
    embedding_query_prompt: str | None = Field(
        None,
        max_length=500,
        description="Text put before every query (e.g. bge's 'Represent this sentence for searching relevant "
        "passages: ', e5's 'query: '); None: the model's declared 'query' prompt; '' for none.",
    )
    embedding_document_prompt: str | None = Field(
        None,
        max_length=500,
        description="Text put before every product text (e5's 'passage: '); None: the model's declared "
        "'document'/'passage' prompt; '' for none. Changing it re-embeds the catalog.",
    )
    torch_threads: int | None = Field(None, ge=1, description="Torch CPU threads; None keeps torch's default.")

    spelling_correction: bool = Field(
        True,
        description="For each query word whose stem no product has: add the catalog's spelling of it (a close"
        " frequent title word, or the parts of a run-together word; reranker.speller) to the lexical query (the"
        " query as typed still counts) and embed the query with it in the word's place.",
    )
    field_boosts: FieldBoosts = Field(default_factory=FieldBoosts)
    candidates: int = Field(100, ge=1, le=1000, description="Top-N of each candidate list (lexical, vector).")
    window: int = Field(200, ge=1, le=2000, description="Fused results pages are cut from.")
    fusion: Literal["rrf", "linear"] = "rrf"
    fusion_backend: Literal["layer", "engine"] = Field(
        "layer", description="Fuse in the layer, or ask the engine for its native hybrid search (server engines)."
    )
    rrf_k: float = Field(60.0, gt=0)
    linear_normalization: Literal["minmax", "zscore"] = "minmax"
    lexical_weight: float = Field(0.5, ge=0, le=MAX_FUSION_WEIGHT)
    vector_weight: float = Field(0.5, ge=0, le=MAX_FUSION_WEIGHT)

    rerank: bool = Field(True, description="Reorder hybrid results with the active learned model, when one is active.")
    default_model: Path | None = Field(
        BUNDLED_MODEL,
        description="Model directory that serves until one is activated in data_dir (None: no bundled model).",
    )
    rerank_window: int = Field(200, ge=1, le=2000, description="Top fused results the learned model reorders.")
    product_cache_entries: int = Field(
        50_000,
        ge=0,
        description="Products of committed index versions each worker keeps for the rerank stage on Elasticsearch"
        " and OpenSearch, where fetching a window's products is most of the stage (0: fetch every time).",
    )
    rerank_unfit_catalogs: bool = Field(
        False,
        description="Rerank with a model trained without a text field (brand, category, description) that most of"
        " the served catalog's products have; by default such a model leaves the fused order and /readyz says why.",
    )
    rerank_compiler: Literal["gcc", "clang", "none"] = Field(
        "gcc",
        description="C compiler that turns the active model's trees into native code (a third of LightGBM's"
        " predict time); 'none', or no compiler on the machine, predicts through LightGBM.",
    )
    feature_log_sample: float = Field(
        0.0, ge=0, le=1, description="Share of /search requests whose served feature vectors are logged."
    )

    exact_knn_max: int = Field(20_000, ge=0, description="Above this many products, kNN uses an HNSW index.")
    hnsw_m: int = Field(16, ge=2)
    hnsw_ef_construction: int = Field(100, ge=10)
    hnsw_ef_search: int = Field(400, ge=10)

    @field_validator("embedding_fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        unknown = [name for name in fields if name not in PRODUCT_TEXT_FIELDS]
        if unknown or not fields:
            raise ValueError(f"must be a non-empty list drawn from {list(PRODUCT_TEXT_FIELDS)}; got {fields}")
        return fields

    @property
    def index_root(self) -> Path:
        return self.data_dir / "indexes"

    @property
    def embedding_cache_path(self) -> Path:
        return self.data_dir / "embedding_cache.sqlite3"

    @property
    def dead_letter_dir(self) -> Path:
        return self.data_dir / "dead_letter"

    @property
    def catalog_stats_dir(self) -> Path:
        return self.data_dir / "catalog_stats"

    @property
    def model_root(self) -> Path:
        return self.data_dir / "rankers"

    @property
    def feature_log_dir(self) -> Path:
        return self.data_dir / "feature_logs"


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, a TOML file, the environment and explicit overrides.

    Raises ConfigError naming the bad key and what it must be.
    """
    path = config_file or os.environ.get("RELEVANCE_CONFIG_FILE")
    if path and not Path(path).is_file():
        raise ConfigError(f"config file {path} does not exist", field="config_file")

    class FileBackedSettings(Settings):
        model_config = SettingsConfigDict(toml_file=path)

        @classmethod
        def settings_customise_sources(  # type: ignore[override]
            cls, settings_cls: type[BaseSettings], init_settings: Any, env_settings: Any, **_: Any
        ) -> tuple[Any, ...]:
            return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    try:
        return FileBackedSettings(**overrides) if path else Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {key!r}: {first['msg']}", field=key) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", field="config_file") from exc
