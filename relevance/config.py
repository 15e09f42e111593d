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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource
from pydantic_settings.exceptions import SettingsError

from relevance.errors import ConfigError
from reranker.registry import MODEL_FILE

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

    @model_validator(mode="after")
    def _some_field_searched(self) -> FieldBoosts:
        # All zero: the embedded engine would match nothing and the servers every field.
        if not any((self.title, self.brand, self.category, self.description)):
            raise ValueError("at least one field needs a weight above 0")
        return self


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
    max_rejected_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="An index job whose catalog has a larger share of bad rows builds nothing (1: never refused).",
    )

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
    feature_log_keep_days: int = Field(
        30,
        ge=0,
        le=36_500,
        description="Days of feature logs kept before today's; older files are deleted (0: keep all).",
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

    @field_validator("default_model", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # TOML and the environment have no None

    @field_validator("default_model")
    @classmethod
    def _model_directory(cls, path: Path | None) -> Path | None:
        # Checked at load: the registry would otherwise take a wrong path for "no bundled model".
        if path is not None and not (path / MODEL_FILE).is_file():
            raise ValueError(f"{path} is not a model directory (it has no {MODEL_FILE}); empty for no bundled model")
        return path

    @field_validator("vector_weight")
    @classmethod
    def _a_blend_weighs_something(cls, weight: float, info: ValidationInfo) -> float:
        # fusion and lexical_weight are declared (so validated) before vector_weight
        if weight == 0 and info.data.get("fusion") == "linear" and info.data.get("lexical_weight") == 0:
            raise ValueError("lexical_weight and vector_weight are both 0: a linear blend would score everything 0")
        return weight

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
    def index_job_lock_path(self) -> Path:
        """Held by the job that is moving the alias (indexer.job_lock)."""
        return self.data_dir / "index_history" / f"{self.index_alias}.lock"

    @property
    def swap_history_path(self) -> Path:
        """Which version was live before each of the alias's versions (indexer.history)."""
        return self.data_dir / "index_history" / f"{self.index_alias}.json"

    @property
    def model_root(self) -> Path:
        return self.data_dir / "rankers"

    @property
    def feature_log_dir(self) -> Path:
        return self.data_dir / "feature_logs"


# RELEVANCE_* variables that are not settings: the config file's path, the engine
# downloads' cache (scripts/engines.py) and the test suite's server URLs.
NON_SETTING_VARIABLES = frozenset({"RELEVANCE_CONFIG_FILE", "RELEVANCE_ENGINES_HOME"})
NON_SETTING_PREFIXES = ("RELEVANCE_TEST_",)


def _setting_variables() -> set[str]:
    names = set()
    for name, info in Settings.model_fields.items():
        names.add(f"RELEVANCE_{name.upper()}")
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names.update(f"RELEVANCE_{name.upper()}__{sub.upper()}" for sub in info.annotation.model_fields)
    return names


def _unknown_variables() -> list[str]:
    """pydantic-settings ignores prefixed variables that match no setting; a typo must not."""
    known = _setting_variables() | NON_SETTING_VARIABLES
    return sorted(
        name
        for name in os.environ
        if name.upper().startswith("RELEVANCE_")
        and name.upper() not in known
        and not name.upper().startswith(NON_SETTING_PREFIXES)
    )


PATH_SETTINGS = ("data_dir", "default_model")


class ConfigFileSource(TomlConfigSettingsSource):
    """The TOML file's settings, its relative paths taken from the file's directory: API workers,
    index jobs and cron start in different working directories, and one file must mean one data
    directory to all of them. (Paths from the environment or the command line stay the process's.)

    The directory is the one the file is named in, links not followed: a mounted config
    (a Kubernetes ConfigMap) links to a folder that changes on every update.
    """

    def __call__(self) -> dict[str, Any]:
        values = dict(super().__call__())
        base = Path(os.path.abspath(self.toml_file_path)).parent
        for key in PATH_SETTINGS:
            value = values.get(key)
            if isinstance(value, str) and value:
                path = Path(value).expanduser()
                values[key] = str(path if path.is_absolute() else base / path)
        model = values.get("embedding_model")
        # A model name or a local directory, as sentence-transformers takes it: a directory
        # beside the file is the file's; anything else (a hub name) stays as written.
        if isinstance(model, str) and model and (beside := base / Path(model).expanduser()).is_dir():
            values["embedding_model"] = str(beside)
        return values


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, a TOML file, the environment and explicit overrides.

    Raises ConfigError naming every bad key (or environment variable) and what it must be.
    """
    unknown = _unknown_variables()
    if unknown:
        raise ConfigError(
            f"unknown environment variable(s) {', '.join(unknown)}: no such setting"
            " (settings are RELEVANCE_<NAME>, nested ones RELEVANCE_<NAME>__<KEY>)",
            field=unknown[0],
        )
    path = config_file or os.environ.get("RELEVANCE_CONFIG_FILE")
    if path and not Path(path).is_file():
        raise ConfigError(f"config file {path} does not exist", field="config_file")

    class FileBackedSettings(Settings):
        model_config = SettingsConfigDict(toml_file=path)

        @classmethod
        def settings_customise_sources(  # type: ignore[override]
            cls, settings_cls: type[BaseSettings], init_settings: Any, env_settings: Any, **_: Any
        ) -> tuple[Any, ...]:
            return (init_settings, env_settings, ConfigFileSource(settings_cls))

    try:
        return FileBackedSettings(**overrides) if path else Settings(**overrides)
    except ValidationError as exc:
        problems = [
            (".".join(str(part) for part in error["loc"]) or "settings", error["msg"]) for error in exc.errors()
        ]
        detail = "; ".join(f"{key!r}: {message}" for key, message in problems)
        raise ConfigError(f"invalid setting{'s' if len(problems) > 1 else ''} {detail}", field=problems[0][0]) from exc
    except SettingsError as exc:  # a list or nested setting in the environment that is not JSON
        raise ConfigError(f"{exc}: list and nested settings are JSON in the environment", field="settings") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", field="config_file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc}", field="config_file") from exc
