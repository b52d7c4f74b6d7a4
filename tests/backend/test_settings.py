"""backend.config.Settings: defaults, ``LISA_`` environment variables over an optional YAML file, and refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.config import PLACEHOLDER_SECRETS, Settings
from backend.runtime.keys import with_keys


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
    assert settings.embedding_backend == "openvino"
    assert settings.embedding_cache_path == Path(".lisa").resolve() / "embedding-cache"
    assert settings.bootstrap_admin is True
    assert settings.token_default_days == 90
    assert settings.secret_key.get_secret_value() == ""  # generated into the data dir by `lisa serve`
    assert settings.encryption_key.get_secret_value() == ""
    assert settings.secrets_required is False


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
    assert settings.embedding_cache_path == (tmp_path / "data").resolve() / "embedding-cache"


def test_the_embedding_backend_and_its_cache_are_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LISA_EMBEDDING_BACKEND", "torch")
    monkeypatch.setenv("LISA_EMBEDDING_CACHE_DIR", str(tmp_path / "ov"))
    settings = Settings()
    assert settings.embedding_backend == "torch"
    assert settings.embedding_cache_path == (tmp_path / "ov").resolve()
    monkeypatch.setenv("LISA_EMBEDDING_BACKEND", "onnx")
    with pytest.raises(ValueError, match="embedding_backend"):
        Settings()


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


REAL = "s3cr3t-" + "x" * 40


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("name", ["LISA_SECRET_KEY", "LISA_ENCRYPTION_KEY"])
@pytest.mark.parametrize("secret", sorted(PLACEHOLDER_SECRETS))
def test_a_placeholder_secret_is_refused_everywhere(
    monkeypatch: pytest.MonkeyPatch, secret: str, name: str, environment: str
) -> None:
    monkeypatch.setenv("LISA_ENVIRONMENT", environment)
    monkeypatch.setenv("LISA_SECRET_KEY", REAL)
    monkeypatch.setenv("LISA_ENCRYPTION_KEY", REAL)
    monkeypatch.setenv(name, secret)
    with pytest.raises(ValidationError, match=f"{name} is a placeholder"):
        Settings()


@pytest.mark.parametrize("name", ["LISA_SECRET_KEY", "LISA_ENCRYPTION_KEY"])
def test_production_refuses_a_missing_secret(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("LISA_ENVIRONMENT", "production")
    monkeypatch.setenv("LISA_SECRET_KEY", REAL)
    monkeypatch.setenv("LISA_ENCRYPTION_KEY", REAL)
    monkeypatch.delenv(name)
    with pytest.raises(ValidationError, match=f"{name} must be set to a real secret .* runs in production"):
        Settings()


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "lisa.internal"])
def test_any_address_but_loopback_needs_real_secrets_in_development_too(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("LISA_HOST", host)
    with pytest.raises(ValidationError, match=f"LISA_SECRET_KEY must be set .* listens on {host}"):
        Settings()
    monkeypatch.setenv("LISA_SECRET_KEY", REAL)
    with pytest.raises(ValidationError, match="LISA_ENCRYPTION_KEY must be set"):
        Settings()
    monkeypatch.setenv("LISA_ENCRYPTION_KEY", "short")
    with pytest.raises(ValidationError, match="LISA_ENCRYPTION_KEY is too short"):
        Settings()
    monkeypatch.setenv("LISA_ENCRYPTION_KEY", REAL)
    assert Settings().secrets_required is True


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_development_runs_on_generated_secrets(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("LISA_HOST", host)
    settings = Settings()
    assert settings.secrets_required is False and settings.secret_key.get_secret_value() == ""


def test_production_refuses_a_placeholder_secret_from_the_yaml_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_yaml(tmp_path, monkeypatch, "environment: production\nsecret_key: changeme\n")
    with pytest.raises(ValidationError, match="LISA_SECRET_KEY"):
        Settings()


def test_production_with_real_secrets_works_and_never_shows_them(monkeypatch: pytest.MonkeyPatch) -> None:
    other = "3ncrypt-" + "y" * 40
    monkeypatch.setenv("LISA_ENVIRONMENT", "production")
    monkeypatch.setenv("LISA_SECRET_KEY", REAL)
    monkeypatch.setenv("LISA_ENCRYPTION_KEY", other)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.secret_key.get_secret_value() == REAL
    assert settings.encryption_key.get_secret_value() == other
    for secret in (REAL, other):
        assert secret not in repr(settings)
        assert secret not in str(settings)
        assert secret not in settings.model_dump_json()


def test_generated_keys_are_made_once_private_and_kept(tmp_path: Path) -> None:
    settings = with_keys(Settings(data_dir=tmp_path / "data"))
    again = with_keys(Settings(data_dir=tmp_path / "data"))
    for name, field in (("secret-key", "secret_key"), ("encryption-key", "encryption_key")):
        path = tmp_path / "data" / name
        assert path.stat().st_mode & 0o777 == 0o600
        value = getattr(settings, field).get_secret_value()
        assert len(value) >= 32 and value == path.read_text().strip() == getattr(again, field).get_secret_value()
    assert settings.secret_key.get_secret_value() != settings.encryption_key.get_secret_value()
    # A reader (in-process ingestion) never makes keys of its own.
    elsewhere = with_keys(Settings(data_dir=tmp_path / "elsewhere"), create=False)
    assert elsewhere.encryption_key.get_secret_value() == "" and not (tmp_path / "elsewhere").exists()


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
