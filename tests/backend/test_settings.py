"""backend.config.Settings: defaults, ``LISA_`` environment variables over an optional YAML file, and refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.config import PLACEHOLDER_SECRETS, Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the LISA_ variables it sets itself."""
    for key in list(os.environ):
        if key.startswith("LISA_"):
            monkeypatch.delenv(key)


def write_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "lisa.yaml"
    path.write_text(text)
    monkeypatch.setenv("LISA_CONFIG_FILE", str(path))
    return path


def test_defaults_are_a_loopback_development_setup_on_embedded_components() -> None:
    settings = Settings()
    assert settings.environment == "development"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.allow_remote is False
    assert settings.workers == 1
    assert settings.data_dir == Path(".lisa")
    assert settings.pgdata_dir == Path(".lisa").resolve() / "pgdata"
    assert settings.database_url == ""  # empty: the embedded PostgreSQL
    assert settings.local_models is True
    assert settings.textgen_model_id == "gemma3-270m"
    assert settings.embedding_model_id == "minilm-l6-v2"
    assert settings.bootstrap_admin is True
    assert settings.token_default_days == 90
    assert settings.secret_key.get_secret_value() == "dev-secret"


def test_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LISA_PORT", "9123")
    monkeypatch.setenv("LISA_LOCAL_MODELS", "false")
    monkeypatch.setenv("LISA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LISA_DATABASE_URL", "postgresql://u@db.example:5432/lisa")
    settings = Settings()
    assert settings.port == 9123
    assert settings.local_models is False
    assert settings.data_dir == tmp_path / "data"
    assert settings.pgdata_dir == (tmp_path / "data").resolve() / "pgdata"
    assert settings.database_url == "postgresql://u@db.example:5432/lisa"


def test_unprefixed_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9999")
    assert Settings().port == 8080


def test_keyword_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISA_PORT", "9123")
    assert Settings(port=9300).port == 9300


def test_yaml_file_sets_values_and_environment_wins_over_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_yaml(
        tmp_path,
        monkeypatch,
        "port: 9100\nworkers: 3\ntextgen_model_id: file-model\nnot_a_setting: ignored\n",
    )
    from_file = Settings()
    assert from_file.port == 9100
    assert from_file.workers == 3
    assert from_file.textgen_model_id == "file-model"
    assert not hasattr(from_file, "not_a_setting")

    monkeypatch.setenv("LISA_PORT", "9200")
    both = Settings()
    assert both.port == 9200  # the environment beats the file...
    assert both.workers == 3  # ...and the file still supplies what the environment does not


def test_empty_yaml_file_means_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_yaml(tmp_path, monkeypatch, "")
    assert Settings().port == 8080


@pytest.mark.parametrize("text", ["- port\n- 9100\n", "just a string\n", "42\n"])
def test_yaml_file_that_is_not_a_mapping_is_refused_with_its_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str
) -> None:
    path = write_yaml(tmp_path, monkeypatch, text)
    with pytest.raises(ValueError, match="must hold a mapping") as excinfo:
        Settings()
    assert str(path) in str(excinfo.value)


def test_missing_yaml_file_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    monkeypatch.setenv("LISA_CONFIG_FILE", str(missing))
    with pytest.raises(FileNotFoundError) as excinfo:
        Settings()
    assert str(missing) in str(excinfo.value)


@pytest.mark.parametrize("secret", sorted(PLACEHOLDER_SECRETS))
def test_production_refuses_a_placeholder_secret(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("LISA_ENVIRONMENT", "production")
    monkeypatch.setenv("LISA_SECRET_KEY", secret)
    with pytest.raises(ValidationError, match="LISA_SECRET_KEY must be set to a real secret"):
        Settings()


def test_production_refuses_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISA_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="LISA_SECRET_KEY"):
        Settings()


def test_production_refuses_a_placeholder_secret_from_the_yaml_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_yaml(tmp_path, monkeypatch, "environment: production\nsecret_key: changeme\n")
    with pytest.raises(ValidationError, match="LISA_SECRET_KEY"):
        Settings()


def test_production_with_a_real_secret_works_and_never_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = "s3cr3t-" + "x" * 40
    monkeypatch.setenv("LISA_ENVIRONMENT", "production")
    monkeypatch.setenv("LISA_SECRET_KEY", real)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.secret_key.get_secret_value() == real
    assert real not in repr(settings)
    assert real not in str(settings)
    assert real not in settings.model_dump_json()


def test_unknown_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISA_ENVIRONMENT", "staging")
    with pytest.raises(ValidationError, match="environment"):
        Settings()


@pytest.mark.parametrize("port", ["0", "65536", "-1", "http"])
def test_invalid_port_is_rejected(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("LISA_PORT", port)
    with pytest.raises(ValidationError, match="port"):
        Settings()


@pytest.mark.parametrize("port", [1, 65535])
def test_port_bounds_are_inclusive(port: int) -> None:
    assert Settings(port=port).port == port


def test_invalid_port_in_the_yaml_file_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_yaml(tmp_path, monkeypatch, "port: 70000\n")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_zero_workers_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISA_WORKERS", "0")
    with pytest.raises(ValidationError, match="workers"):
        Settings()
