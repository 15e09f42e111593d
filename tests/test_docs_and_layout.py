"""The README stays true, and the layout keeps engine code where it belongs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from relevance.api import create_app
from relevance.cli import main
from relevance.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENGINE_CLIENTS = {"tantivy", "hnswlib", "elasticsearch", "opensearchpy"}


def test_every_cli_command_is_documented() -> None:
    for name in main.commands:
        assert f"relevance {name}" in README, f"CLI command {name!r} missing from README"


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`{name}`" in README, f"setting {name!r} missing from README"


def test_every_endpoint_is_documented(services) -> None:
    app = create_app(services=services)
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<product_id>", "<id>")
        assert f"`GET {path}`" in README, f"endpoint {path} missing from README"


def test_the_feature_count_the_readme_gives_is_the_registrys() -> None:
    from reranker.features import FEATURES

    stated = re.findall(r"over (\d+) query/product features", README)
    assert stated == [str(len(FEATURES))], f"README states {stated} features; the registry has {len(FEATURES)}"


def test_only_engine_adapters_import_engine_clients() -> None:
    offenders = []
    for path in [*ROOT.glob("relevance/**/*.py"), *ROOT.glob("indexer/**/*.py")]:
        if "engines" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ENGINE_CLIENTS]
    assert offenders == []


def test_building_the_app_loads_no_model_and_touches_no_disk(tmp_path: Path) -> None:
    from relevance.config import load_settings

    data_dir = tmp_path / "never-created"
    app = create_app(load_settings(data_dir=data_dir))
    assert not app.extensions["relevance"].embedder.loaded
    assert not data_dir.exists()
