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
        ("fusion = 'linear'\nlexical_weight = 0\nvector_weight = 0", "vector_weight"),
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


def test_a_misspelt_environment_variable_fails_naming_every_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELEVANCE_FUSOIN", "linear")
    monkeypatch.setenv("RELEVANCE_FIELD_BOOSTS__TITEL", "4")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "RELEVANCE_FUSOIN" in error.value.detail and "RELEVANCE_FIELD_BOOSTS__TITEL" in error.value.detail


def test_variables_under_the_prefix_that_are_not_settings_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "relevance.toml"
    config.write_text('fusion = "linear"\n')
    monkeypatch.setenv("RELEVANCE_CONFIG_FILE", str(config))
    monkeypatch.setenv("RELEVANCE_TEST_OPENSEARCH_URL", "http://127.0.0.1:9")  # the test suite's (.ci/run)
    monkeypatch.setenv("RELEVANCE_ENGINES_HOME", str(tmp_path))  # scripts/engines.py's download cache
    monkeypatch.setenv("RELEVANCE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("relevance_rrf_k", "7")  # settings' variables are case-insensitive
    settings = load_settings()
    assert settings.fusion == "linear" and settings.data_dir == tmp_path and settings.rrf_k == 7


def test_every_invalid_key_of_a_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "relevance.toml"
    config.write_text("fusoin = 'rrf'\nwindow = -1\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert "'fusoin'" in error.value.detail and "'window'" in error.value.detail


def test_a_config_file_that_is_not_utf8_is_a_config_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes('fusion = "rrf" # café\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8") as error:
        load_settings(config)
    assert str(config) in error.value.detail


def test_default_model_must_be_a_model_directory_or_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(default_model=tmp_path / "nonexistent")
    assert error.value.field == "default_model" and str(tmp_path / "nonexistent") in error.value.detail
    assert load_settings(default_model=None).default_model is None
    monkeypatch.setenv("RELEVANCE_DEFAULT_MODEL", "")  # "empty for none", as the README says
    assert load_settings().default_model is None


def test_a_config_files_relative_paths_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # API workers, index jobs and cron start in different directories; one file, one data dir.
    config_dir = tmp_path / "etc"
    (config_dir / "models" / "v1").mkdir(parents=True)
    (config_dir / "models" / "v1" / "model.txt").write_text("tree\n")
    config = config_dir / "relevance.toml"
    config.write_text('data_dir = "var"\ndefault_model = "models/v1"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(config)
    assert settings.data_dir == config_dir / "var"
    assert settings.default_model == config_dir / "models" / "v1"
    config.write_text(f'data_dir = "{tmp_path / "abs"}"\n')
    assert load_settings(config).data_dir == tmp_path / "abs", "absolute paths stay"
    monkeypatch.setenv("RELEVANCE_DATA_DIR", "from-env")
    assert load_settings(config).data_dir == Path("from-env"), "the environment is the process's: its cwd"
    assert load_settings(config, data_dir=Path("cli")).data_dir == Path("cli")


def test_a_linked_config_file_is_read_from_the_directory_it_is_named_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Kubernetes ConfigMap mount: relevance.toml -> ..data/relevance.toml -> ..<timestamp>/relevance.toml,
    # and the timestamped folder changes on every update.
    mount = tmp_path / "etc"
    (mount / "..2026_03_10").mkdir(parents=True)
    (mount / "..2026_03_10" / "relevance.toml").write_text(
        'data_dir = "var"\nembedding_model = "models/st"\ndefault_model = ""\n'
    )
    (mount / "..data").symlink_to("..2026_03_10")
    (mount / "relevance.toml").symlink_to("..data/relevance.toml")
    (mount / "models" / "st").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(mount / "relevance.toml")
    assert settings.data_dir == mount / "var"
    assert settings.embedding_model == str(mount / "models" / "st"), "a model directory beside the file"
    (mount / "..2026_03_10" / "relevance.toml").write_text(
        'data_dir = "~/relevance"\nembedding_model = "all-MiniLM-L6-v2"\n'
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = load_settings(mount / "relevance.toml")
    assert settings.data_dir == tmp_path / "home" / "relevance"
    assert settings.embedding_model == "all-MiniLM-L6-v2", "a model name stays a name"


def test_feature_log_retention_is_bounded() -> None:
    with pytest.raises(ConfigError, match="feature_log_keep_days"):
        load_settings(feature_log_keep_days=1_000_000)  # its date arithmetic would overflow
