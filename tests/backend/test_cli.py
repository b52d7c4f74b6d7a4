"""The `lisa` admin CLI, run as a user runs it (a subprocess) against the session's real `lisa serve`."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import LISA, LisaServer, free_port


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `lisa ARGS` with no LISA_* credentials inherited, in a folder with no `.lisa` data dir."""
    base = {k: v for k, v in os.environ.items() if k not in {"LISA_URL", "LISA_API_KEY", "LISA_DATA_DIR"}}
    # Wide enough that rich neither wraps nor truncates table cells and messages.
    base["COLUMNS"] = "300"
    return subprocess.run(
        [LISA, *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def as_admin(lisa: LisaServer) -> list[str]:
    return ["--url", lisa.url, "--token", lisa.token]


def test_models_list_shows_the_local_models(lisa: LisaServer, tmp_path: Path) -> None:
    result = run_cli("models", "list", *as_admin(lisa), cwd=tmp_path)
    assert result.returncode == 0, output(result)
    cells = [[c.strip() for c in re.split(r"[│|]", line)] for line in result.stdout.splitlines()]
    rows = {c[1]: " ".join(c) for c in cells if len(c) > 2}
    assert "gemma3-270m" in rows
    assert "textgen" in rows["gemma3-270m"]
    assert "InService" in rows["gemma3-270m"]
    assert "minilm-l6-v2" in rows
    assert "embedding" in rows["minilm-l6-v2"]


def test_url_and_token_can_come_from_the_environment(lisa: LisaServer, tmp_path: Path) -> None:
    result = run_cli("models", "list", cwd=tmp_path, env={"LISA_URL": lisa.url, "LISA_API_KEY": lisa.token})
    assert result.returncode == 0, output(result)
    assert "gemma3-270m" in result.stdout


def test_token_defaults_to_the_data_dirs_admin_token(lisa: LisaServer, tmp_path: Path) -> None:
    result = run_cli("models", "list", "--url", lisa.url, "--data-dir", str(lisa.data_dir), cwd=tmp_path)
    assert result.returncode == 0, output(result)
    assert "gemma3-270m" in result.stdout


def test_no_token_anywhere_is_a_clear_error(lisa: LisaServer, tmp_path: Path) -> None:
    result = run_cli("models", "list", "--url", lisa.url, cwd=tmp_path)
    assert result.returncode == 2
    assert "no API token" in output(result)


def test_models_add_then_remove(lisa: LisaServer, admin: httpx.Client, tmp_path: Path) -> None:
    model_id = f"cli-model-{secrets.token_hex(3)}"
    added = run_cli("models", "add", model_id, "--base-url", "http://127.0.0.1:9/v1", *as_admin(lisa), cwd=tmp_path)
    assert added.returncode == 0, output(added)
    assert f"added {model_id} (textgen, internal)" in added.stdout
    try:
        got = admin.get(f"/api/models/{model_id}")
        assert got.status_code == 200, got.text
        assert got.json()["hosting"] == "internal"
        assert got.json()["type"] == "textgen"
        assert got.json()["base_url"] == "http://127.0.0.1:9/v1"

        listed = run_cli("models", "list", *as_admin(lisa), cwd=tmp_path)
        assert model_id in listed.stdout
        assert "http://127.0.0.1:9/v1" in listed.stdout

        again = run_cli("models", "add", model_id, "--base-url", "http://127.0.0.1:9/v1", *as_admin(lisa), cwd=tmp_path)
        assert again.returncode != 0
        assert "409" in output(again)
        assert "already exists" in output(again)
    finally:
        removed = run_cli("models", "remove", model_id, *as_admin(lisa), cwd=tmp_path)
    assert removed.returncode == 0, output(removed)
    assert f"deleted {model_id}" in removed.stdout  # `remove` is `delete` under its older name
    assert admin.get(f"/api/models/{model_id}").status_code == 404


def test_models_add_with_a_bad_body_reports_the_validation_error(lisa: LisaServer, tmp_path: Path) -> None:
    # An internal model needs a base URL: the server answers 422 and the CLI says so.
    result = run_cli("models", "add", f"cli-bad-{secrets.token_hex(3)}", *as_admin(lisa), cwd=tmp_path)
    assert result.returncode != 0
    assert "422" in output(result)
    assert "base_url" in output(result)


def test_removing_an_unknown_model_fails_with_not_found(lisa: LisaServer, tmp_path: Path) -> None:
    result = run_cli("models", "remove", f"no-such-model-{secrets.token_hex(3)}", *as_admin(lisa), cwd=tmp_path)
    assert result.returncode != 0
    assert "404" in output(result)
    assert "not found" in output(result)


def test_tokens_create_list_revoke(lisa: LisaServer, tmp_path: Path) -> None:
    name = f"ci-{secrets.token_hex(3)}"
    created = run_cli("tokens", "create", name, "--json", *as_admin(lisa), cwd=tmp_path)
    assert created.returncode == 0, output(created)
    body = json.loads(created.stdout)
    secret, token_id = body["token"], body["id"]
    assert body["name"] == name
    assert body["username"] == "admin"
    assert body["active"] is True

    bearer = {"Authorization": f"Bearer {secret}"}
    works = httpx.get(f"{lisa.url}/v1/models", headers=bearer, timeout=30)
    assert works.status_code == 200, works.text
    assert "gemma3-270m" in {m["id"] for m in works.json()["data"]}

    listed = run_cli("tokens", "list", *as_admin(lisa), cwd=tmp_path)
    assert listed.returncode == 0, output(listed)
    row = next((line for line in listed.stdout.splitlines() if token_id in line), None)
    assert row is not None, listed.stdout
    assert name in row
    assert body["prefix"] in row
    assert "true" in row  # active
    assert secret not in listed.stdout

    revoked = run_cli("tokens", "revoke", token_id, *as_admin(lisa), cwd=tmp_path)
    assert revoked.returncode == 0, output(revoked)
    assert f"revoked {token_id}" in revoked.stdout
    refused = httpx.get(f"{lisa.url}/v1/models", headers=bearer, timeout=30)
    assert refused.status_code == 401, refused.text
    assert "revoked" in refused.text

    relisted = run_cli("tokens", "list", *as_admin(lisa), cwd=tmp_path)
    row = next(line for line in relisted.stdout.splitlines() if token_id in line)
    assert "false" in row  # no longer active


def test_tokens_create_prints_the_secret_once_in_plain_mode(lisa: LisaServer, tmp_path: Path) -> None:
    created = run_cli(
        "tokens", "create", f"ci-plain-{secrets.token_hex(3)}", "--days", "1", *as_admin(lisa), cwd=tmp_path
    )
    assert created.returncode == 0, output(created)
    assert "secret (shown once):" in created.stdout
    secret = created.stdout.strip().splitlines()[-1]
    assert httpx.get(f"{lisa.url}/v1/models", headers={"Authorization": f"Bearer {secret}"}, timeout=30).is_success
    token_id = created.stdout.split()[1]
    assert run_cli("tokens", "revoke", token_id, *as_admin(lisa), cwd=tmp_path).returncode == 0


def test_revoking_an_unknown_token_fails_with_not_found(lisa: LisaServer, tmp_path: Path) -> None:
    result = run_cli("tokens", "revoke", "no-such-token", *as_admin(lisa), cwd=tmp_path)
    assert result.returncode != 0
    assert "not found" in output(result)


@pytest.mark.parametrize("command", [["models", "list"], ["tokens", "create", "never"], ["models", "remove", "x"]])
def test_a_wrong_token_is_a_401_error(lisa: LisaServer, tmp_path: Path, command: list[str]) -> None:
    result = run_cli(*command, "--url", lisa.url, "--token", "lisa_not-a-real-token", cwd=tmp_path)
    assert result.returncode != 0
    assert "401" in output(result)
    assert "invalid API token" in output(result)


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = run_cli("models", "list", "--url", url, "--token", "anything", cwd=tmp_path)
    assert result.returncode != 0
    assert f"cannot reach LISA at {url}" in output(result)
