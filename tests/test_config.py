from __future__ import annotations

from pathlib import Path

import pytest

from relevance.config import load_settings
from relevance.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings()
    assert settings.engine == "embedded" and settings.fusion == "rrf" and settings.candidates == 100
    assert (
        settings.field_boosts.title
        > settings.field_boosts.brand
        > settings.field_boosts.category
        > settings.field_boosts.description
    )


def test_file_then_environment_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "relevance.toml"
    config.write_text('fusion = "linear"\nrrf_k = 10\ncandidates = 50\n[field_boosts]\ntitle = 5.0\n')
    monkeypatch.setenv("RELEVANCE_RRF_K", "20")
    monkeypatch.setenv("RELEVANCE_FIELD_BOOSTS__BRAND", "4")
    settings = load_settings(config, candidates=70)
    assert settings.fusion == "linear"  # file
    assert settings.rrf_k == 20  # env beats file
    assert settings.candidates == 70  # override beats all
    assert settings.field_boosts.title == 5.0


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("fusoin = 'rrf'", "fusoin"),
        ("fusion = 'sum'", "fusion"),
        ("[field_boosts]\ntitel = 2", "field_boosts.titel"),
        ("embedding_fields = ['colour']", "embedding_fields"),
    ],
)
def test_unknown_or_invalid_settings_fail_naming_the_key(tmp_path: Path, content: str, key: str) -> None:
    config = tmp_path / "relevance.toml"
    config.write_text(content)
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert error.value.field == key and key in error.value.detail


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("fusion = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
