"""The images' entrypoint scripts, run for real under dash (a strict POSIX sh). The model entrypoint gets a
stand-in `s5cmd` that copies from a local folder playing the bucket, and stand-in servers that print how they
were started: what is checked is the sync call, the exec'd command line, and the failures."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support import ROOT

MODEL_ENTRYPOINT = ROOT / "docker" / "models" / "entrypoint.sh"
BACKEND_ENTRYPOINT = ROOT / "docker" / "backend-entrypoint.sh"
DASH = shutil.which("dash") or "/bin/sh"

FAKE_S5CMD = """#!/bin/sh
printf '%s\\n' "$@" > "$FAKE_LOG/s5cmd.args"
[ -z "${FAKE_S5CMD_FAIL:-}" ] || exit 1
for last; do :; done
cp -R "$FAKE_BUCKET/." "$last"
"""
FAKE_SERVER = """#!/bin/sh
printf '%s\\n' "$(basename "$0")" "$@"
"""


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "s5cmd", FAKE_S5CMD)
    for server in ("vllm", "text-generation-launcher", "text-embeddings-router"):
        executable(bin_dir / server, FAKE_SERVER)
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "config.json").write_text("{}")
    (bucket / "model.safetensors").write_bytes(b"\0" * 16)
    return tmp_path


def run_model(sandbox: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": f"{sandbox / 'bin'}:/usr/bin:/bin",
        "HOME": str(sandbox / "home"),
        "FAKE_LOG": str(sandbox),
        "FAKE_BUCKET": str(sandbox / "bucket"),
        "LISA_MODEL_ID": "llama",
        "LISA_MODEL_DIR": str(sandbox / "models" / "llama"),
        "LISA_WEIGHTS_S3_URI": "s3://weights/models/llama",
    }
    return subprocess.run(
        [DASH, str(MODEL_ENTRYPOINT), *args], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


def test_vllm_syncs_then_serves_on_all_gpus(sandbox: Path) -> None:
    result = run_model(
        sandbox,
        "--enable-prefix-caching",
        LISA_ENGINE="vllm",
        LISA_GPU_COUNT="4",
        LISA_SERVED_MODEL_NAME="llama-3.1-8b",
        LISA_SERVER_ARGS="--max-model-len 8192 --dtype *",
    )
    assert result.returncode == 0, result.stderr
    model_dir = str(sandbox / "models" / "llama")
    sync = (sandbox / "s5cmd.args").read_text().splitlines()
    assert sync == ["--numworkers", "64", "sync", "--delete", "s3://weights/models/llama/*", f"{model_dir}/"]
    assert (sandbox / "models" / "llama" / "model.safetensors").exists()
    assert result.stdout.splitlines() == [
        "vllm",
        "serve",
        model_dir,
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--served-model-name",
        "llama-3.1-8b",
        "--tensor-parallel-size",
        "4",
        "--max-model-len",
        "8192",
        "--dtype",
        "*",  # split on spaces, never glob-expanded
        "--enable-prefix-caching",
    ]


def test_vllm_keeps_an_explicit_tensor_parallel_size(sandbox: Path) -> None:
    result = run_model(sandbox, LISA_ENGINE="vllm", LISA_GPU_COUNT="4", LISA_SERVER_ARGS="--tensor-parallel-size 2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("--tensor-parallel-size") == 1 and "2" in result.stdout.splitlines()


def test_tgi_and_tei_command_lines(sandbox: Path) -> None:
    model_dir = str(sandbox / "models" / "llama")
    tgi = run_model(sandbox, LISA_ENGINE="tgi", PORT="9000")
    assert tgi.stdout.splitlines() == [
        "text-generation-launcher",
        "--model-id",
        model_dir,
        "--hostname",
        "0.0.0.0",
        "--port",
        "9000",
    ]
    tei = run_model(sandbox, LISA_ENGINE="tei", LISA_SERVER_ARGS="--auto-truncate")
    assert tei.stdout.splitlines() == [
        "text-embeddings-router",
        "--model-id",
        model_dir,
        "--hostname",
        "0.0.0.0",
        "--port",
        "8080",
        "--auto-truncate",
    ]


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"LISA_ENGINE": "vllm", "FAKE_S5CMD_FAIL": "1"}, 69, "weights sync from s3://weights/models/llama/ failed"),
        ({"LISA_ENGINE": "ollama"}, 64, "LISA_ENGINE must be vllm, tgi or tei"),
        ({"LISA_ENGINE": "vllm", "LISA_WEIGHTS_S3_URI": "/local/path"}, 64, "must be an s3:// URI"),
    ],
)
def test_failures_stop_before_the_server(sandbox: Path, env: dict[str, str], code: int, message: str) -> None:
    result = run_model(sandbox, **env)
    assert result.returncode == code
    assert message in result.stderr
    assert result.stdout == ""  # no server started


def test_an_empty_prefix_is_not_a_model(sandbox: Path) -> None:
    (sandbox / "bucket" / "config.json").unlink()
    result = run_model(sandbox, LISA_ENGINE="tei")
    assert result.returncode == 66 and "no config.json" in result.stderr and result.stdout == ""


def run_backend(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return subprocess.run(
        [DASH, str(BACKEND_ENTRYPOINT), DASH, "-c", command],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_backend_composes_the_database_url_from_the_ecs_parts() -> None:
    password = "p@ss:w/rd%#?& x"
    result = run_backend(
        'printf "%s|%s" "$LISA_DATABASE_URL" "${LISA_DB_PASSWORD:-gone}"',
        LISA_DB_HOST="lisa.abc.us-east-1.rds.amazonaws.com",
        LISA_DB_PORT="5432",
        LISA_DB_NAME="lisa",
        LISA_DB_USER="lisa",
        LISA_DB_PASSWORD=password,
    )
    assert result.returncode == 0, result.stderr
    url_text, leftover = result.stdout.split("|")
    url = make_url(url_text)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "lisa",
        password,
        "lisa.abc.us-east-1.rds.amazonaws.com",
        5432,
        "lisa",
    )
    assert leftover == "gone"  # the loose password is not handed to `lisa serve`


def test_backend_keeps_an_explicit_url_and_fails_without_credentials() -> None:
    explicit = run_backend('printf "%s" "$LISA_DATABASE_URL"', LISA_DATABASE_URL="postgresql://a@b/c", LISA_DB_HOST="x")
    assert explicit.stdout == "postgresql://a@b/c"
    missing = run_backend("echo started", LISA_DB_HOST="x", LISA_DB_PASSWORD="pw")
    assert missing.returncode != 0 and "started" not in missing.stdout and "LISA_DB_USER" in missing.stderr
    embedded = run_backend('printf "[%s]" "${LISA_DATABASE_URL:-}"')
    assert embedded.stdout == "[]"  # nothing given: lisa serve starts its embedded PostgreSQL
