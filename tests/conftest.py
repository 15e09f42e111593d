"""Shared fixtures: real model, real embedded indexes built in temporary directories.

The embedding model loads once per session; the fixture catalog is indexed once
per session into its own data directory through the same job the CLI runs.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from relevance.api import create_app
from relevance.config import Settings, load_settings
from relevance.embedder import Embedder
from relevance.services import Services
from reranker.product_texts import OPTIONAL_TEXT_FIELDS

# Read at import: the autouse fixture below clears RELEVANCE_* variables inside each test.
SERVER_URLS = {
    "elasticsearch": os.environ.get("RELEVANCE_TEST_ELASTICSEARCH_URL"),
    "opensearch": os.environ.get("RELEVANCE_TEST_OPENSEARCH_URL"),
}
DATA = Path(__file__).parent / "data"
CATALOG = DATA / "catalog.jsonl"
BAD_CATALOG = DATA / "bad_catalog.jsonl"


@pytest.fixture(autouse=True)
def _isolate_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RELEVANCE_* variable from the caller's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("RELEVANCE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    model = Embedder(cache_dir=tmp_path_factory.mktemp("models"))
    model.load()
    return model


def titles_only_catalog(directory: Path) -> Path:
    """The fixture catalog without brands, categories and descriptions, like the bundled model's training catalog."""
    path = directory / "titles_only.jsonl"
    with CATALOG.open(encoding="utf-8") as source, path.open("w", encoding="utf-8") as target:
        for line in source:
            product = json.loads(line)
            for name in OPTIONAL_TEXT_FIELDS:
                product.pop(name, None)
            target.write(json.dumps(product) + "\n")
    return path


def make_services(data_dir: Path, embedder: Embedder, **overrides: object) -> Services:
    # Without the bundled reranker unless a test asks for it: layer tests check the fused order.
    overrides.setdefault("default_model", None)
    settings = load_settings(data_dir=data_dir, **overrides)
    services = Services.from_settings(settings)
    services.embedder = embedder
    services.pipeline.embedder = embedder
    return services


@pytest.fixture(scope="session")
def indexed_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    data_dir = tmp_path_factory.mktemp("indexed")
    make_services(data_dir, embedder).index_catalog(CATALOG)
    return data_dir


@pytest.fixture(scope="session")
def services(indexed_dir: Path, embedder: Embedder) -> Services:
    return make_services(indexed_dir, embedder)


@pytest.fixture(scope="session")
def settings(services: Services) -> Settings:
    return services.settings


@pytest.fixture(scope="session")
def client(services: Services) -> Iterator:
    app = create_app(services=services)
    app.testing = True
    yield app.test_client()


@pytest.fixture(params=["embedded", "elasticsearch", "opensearch"])
def engine_services(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder
) -> Iterator[tuple[str, Services]]:
    """(engine name, services) on every engine, with a fresh alias and nothing indexed yet.

    Server engines run where .ci/run started them and skip elsewhere; their versions
    are dropped afterwards because the servers outlive the test session.
    """
    options: dict[str, object] = {}
    if request.param != "embedded":
        url = SERVER_URLS[request.param]
        if not url:
            pytest.skip(f"no {request.param} node (set RELEVANCE_TEST_{request.param.upper()}_URL; .ci/run does)")
        request.applymarker(pytest.mark.engines)
        options = {"engine": request.param, "engine_url": url, "engine_timeout": 30}
    alias = f"t-{uuid.uuid4().hex[:10]}"
    built = make_services(tmp_path, embedder, index_alias=alias, **options)
    yield request.param, built
    for version in built.engine.list_versions(alias):
        built.engine.drop_version(version.name)


def tiny_mpnet_model(
    directory: Path, prompts: dict[str, str] | None = None, include_prompt: bool = True, hidden_size: int = 32
) -> Path:
    """A small random MPNet sentence model: its forward ignores token_type_ids, so the ONNX
    export has no such input while the (BERT) tokenizer still produces one. ``prompts`` are
    saved as the model's declared prompts; ``include_prompt=False`` pools without them."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    from relevance.embedder import DEFAULT_MODEL, resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    config = MPNetConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=160,
    )  # fmt: skip
    MPNetModel(config).save_pretrained(directory / "transformer")
    tokenizer.save_pretrained(directory / "transformer")
    transformer = Transformer(str(directory / "transformer"), max_seq_length=64)
    pooling = Pooling(hidden_size, include_prompt=include_prompt)
    SentenceTransformer(modules=[transformer, pooling], prompts=prompts, device="cpu").save(str(directory / "model"))
    return directory / "model"
