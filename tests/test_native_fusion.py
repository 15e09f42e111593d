"""Engine-native fusion: asked of an engine that lacks it, the answer is a clear 501 naming what is missing.

The Maven Central distributions CI runs have neither Elasticsearch's rank-rrf module
nor OpenSearch's neural-search plugin, so on them the native path must fail clearly
while the layer's own fusion keeps working on the same request.
"""

from __future__ import annotations

import pytest

from relevance.api import create_app
from tests.conftest import CATALOG

MISSING_PART = {"embedded": "no native hybrid", "elasticsearch": "rank-rrf", "opensearch": "neural-search"}


@pytest.fixture
def services(engine_services):
    engine, built = engine_services
    built.index_catalog(CATALOG)
    return engine, built


@pytest.mark.parametrize("method", ["rrf", "linear"])
def test_native_fusion_without_the_engine_feature_is_a_clear_501(services, method: str) -> None:
    engine, built = services
    client = create_app(services=built).test_client()
    response = client.get(f"/search?q=cordless+drill&fusion={method}&fusion_backend=engine")
    assert response.status_code == 501
    body = response.get_json()
    assert body["error"] == "engine_feature_unavailable"
    assert body["field"] == "fusion_backend"
    assert MISSING_PART[engine] in body["detail"] and "fusion_backend=layer" in body["detail"]
    layer = client.get(f"/search?q=cordless+drill&fusion={method}&fusion_backend=layer")
    assert layer.status_code == 200 and layer.get_json()["results"]


def test_native_fusion_as_the_configured_default_fails_clearly_and_lexical_mode_still_works(services) -> None:
    _engine, built = services
    built.pipeline.default_fusion = built.pipeline.default_fusion.model_copy(update={"backend": "engine"})
    client = create_app(services=built).test_client()
    assert client.get("/search?q=drill").status_code == 501
    assert client.get("/search?q=drill&mode=lexical").status_code == 200
