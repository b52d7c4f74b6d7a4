"""Sessions and secrets (issue 9, items 2 and the low ones): no forgeable sessions, server-side logout, fresh
sessions at sign-in, one-time sign-in codes, refusing weak secrets off loopback, the separate encryption key and
the migration that re-seals what older releases stored, and a changed key failing loudly."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken
from itsdangerous import TimestampSigner
from sqlalchemy.engine import make_url

from backend.db import migrate
from backend.db.engine import asyncpg_dsn
from backend.registry.secrets import SecretBox
from tests.backend.browser import browser, sign_in, signed_in
from tests.support import LISA, ROOT, LisaServer, free_port, start_lisa

# sha256 of swagger-ui-bundle.js in the swagger-ui-dist 5.31.0 release on npm (the files the docs page serves).
SWAGGER_UI_BUNDLE_SHA256 = "93b7b0862a80e2786f85b560be7693c2344354ffa7e7e224f850a54349724c31"
PROVIDER_KEY = "sk-legacy-provider-" + "k" * 20
REPOSITORY_SECRET = "opensearch-password-of-old"


def forged_cookie(secret: str, data: dict) -> str:
    """A session cookie as Starlette's SessionMiddleware signs it (what releases before this one trusted)."""
    payload = base64.b64encode(json.dumps(data).encode())
    return TimestampSigner(secret).sign(payload).decode()


def test_a_cookie_forged_with_the_old_default_secret_is_refused(lisa: LisaServer) -> None:
    identity = {"username": "mallory", "groups": ["admin"], "exp": time.time() + 3600}
    for data in ({"oidc": identity}, {"token_sha256": hashlib.sha256(lisa.token.encode()).hexdigest()}):
        with browser(lisa) as web:
            web.cookies.set("lisa_session", forged_cookie("dev-secret", data))
            usage = web.get("/api/usage")  # admins only: it answered 200 to this cookie before
            assert usage.status_code == 401, usage.text
            body = {"id": "forged", "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.1:9/v1"}
            assert web.post("/api/models", json=body).status_code == 401


def test_logout_ends_the_session_server_side(lisa: LisaServer) -> None:
    with signed_in(lisa) as web:
        copied = web.cookies["lisa_session"]
        assert web.get("/api/usage").status_code == 200
        assert web.post("/logout").status_code == 303
    replay = httpx.get(lisa.url + "/api/usage", cookies={"lisa_session": copied}, timeout=30)
    assert replay.status_code == 401 and "sign in again" in replay.json()["detail"]


def test_signing_in_starts_a_fresh_session_and_ends_the_one_before(lisa: LisaServer, admin: httpx.Client) -> None:
    other = admin.post("/api/tokens", json={"name": "fixation", "username": "fiona", "groups": []}).json()
    with signed_in(lisa, other["token"]) as web:
        before = web.cookies["lisa_session"]
        assert sign_in(web, lisa.token).status_code == 303
        after = web.cookies["lisa_session"]
        assert after != before
        assert web.get("/api/usage").status_code == 200  # now the admin
    stale = httpx.get(lisa.url + "/api/tokens", cookies={"lisa_session": before}, timeout=30)
    assert stale.status_code == 401


def test_a_token_in_a_login_link_signs_nobody_in(lisa: LisaServer) -> None:
    with browser(lisa) as web:
        page = web.get("/login", params={"token": lisa.token})
        assert page.status_code == 200 and "set-cookie" not in page.headers
        assert "not accepted" in page.text and lisa.token not in page.text
        assert web.get("/openapi.json").status_code == 401


def test_an_oidc_session_counts_only_where_oidc_is_configured(lisa: LisaServer) -> None:
    """A session row with an OIDC identity (as a server with single sign-on writes it) on a server without it."""
    session_id = secrets.token_urlsafe(32)

    async def insert() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(lisa.database_url))
        try:
            identity = json.dumps({"username": "sso-admin", "groups": ["admin"], "exp": time.time() + 3600})
            await conn.execute(
                "INSERT INTO browser_sessions (id_hash, kind, username, identity, expires_at) "
                "VALUES ($1, 'oidc', 'sso-admin', $2::jsonb, $3)",
                hashlib.sha256(session_id.encode()).hexdigest(),
                identity,
                datetime.now(UTC) + timedelta(hours=1),
            )
        finally:
            await conn.close()

    asyncio.run(insert())
    resp = httpx.get(lisa.url + "/api/usage", cookies={"lisa_session": session_id}, timeout=30)
    assert resp.status_code == 401 and "single sign-on is not configured" in resp.json()["detail"]


def test_the_docs_page_loads_swagger_ui_from_this_server(lisa: LisaServer) -> None:
    with signed_in(lisa) as web:
        page = web.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', page.text)
        assert len(assets) == 3 and all(a.startswith("/docs/assets/") for a in assets), assets
        assert "cdn" not in page.text and "https://" not in page.text
    for asset in assets:  # public files: fetched without the session, like the browser's cache may
        resp = httpx.get(lisa.url + asset, timeout=30)
        assert resp.status_code == 200 and resp.content, asset
    bundle = httpx.get(lisa.url + "/docs/assets/swagger-ui-bundle.js", timeout=30)
    assert "javascript" in bundle.headers["content-type"]
    assert hashlib.sha256(bundle.content).hexdigest() == SWAGGER_UI_BUNDLE_SHA256
    assert httpx.get(lisa.url + "/docs/assets/..%2Fadmin-token", timeout=30).status_code == 404
    assert httpx.get(lisa.url + "/docs/assets/index.html", timeout=30).status_code == 404


def run_serve(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """`lisa serve` expected to refuse to start: its exit status and output (stopped with Ctrl-C if it runs)."""
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        raise AssertionError(f"{argv} started when it should have refused:\n{output}") from None
    return proc.returncode, output


# --- secrets off loopback ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--host", "0.0.0.0"], {"LISA_SECRET_KEY": ""}, "LISA_SECRET_KEY must be set to a real secret"),
        ([], {"LISA_HOST": "0.0.0.0", "LISA_SECRET_KEY": "dev-secret"}, "LISA_SECRET_KEY is a placeholder"),
        (
            ["--host", "0.0.0.0"],
            {"LISA_SECRET_KEY": secrets.token_urlsafe(32), "LISA_ENCRYPTION_KEY": ""},
            "LISA_ENCRYPTION_KEY must be set to a real secret",
        ),
    ],
)
def test_listening_beyond_loopback_needs_real_secrets(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    argv = [LISA, "serve", *args, "--port", str(free_port()), "--data-dir", str(tmp_path / "data"), "--no-local-models"]
    full_env = {**os.environ, "LISA_ALLOW_REMOTE": "true", **env}  # as the image sets it
    returncode, output = run_serve(argv, full_env)
    assert returncode != 0 and message in output, output
    assert "refusing to start" in output and "Traceback" not in output
    assert not (tmp_path / "data" / "pgdata").exists()  # refused before anything started


# --- the upgrade from 0004, one-time codes, a changed key ------------------------------------------------------
def legacy_seal(value: str, session_secret: str = "dev-secret") -> str:
    """How releases before migration 0006 sealed stored secrets: a key derived from the session secret."""
    key = base64.urlsafe_b64encode(hashlib.sha256(("lisa-model-keys:" + session_secret).encode()).digest())
    return Fernet(key).encrypt(value.encode()).decode()


class Recorder(BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream that remembers the Authorization header of each request."""

    seen: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        Recorder.seen.append(self.headers.get("authorization") or "")
        body = json.dumps(
            {
                "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture(scope="module")
def legacy_database(lisa: LisaServer, upstream: str) -> Iterator[str]:
    """A database as a release before 0006 left it: schema at 0004, secrets sealed with the old default secret."""
    name = "lisa_legacy_" + secrets.token_hex(4)
    url = make_url(lisa.database_url).set(database=name).render_as_string(hide_password=False)

    async def run(dsn: str, *statements: tuple[str, tuple]) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for sql, params in statements:
                await conn.execute(sql, *params)
        finally:
            await conn.close()

    asyncio.run(run(asyncpg_dsn(lisa.database_url), (f'CREATE DATABASE "{name}"', ())))
    migrate.upgrade(url, "0004")
    asyncio.run(
        run(
            asyncpg_dsn(url),
            (
                "INSERT INTO models (id, name, type, hosting, base_url, api_key_encrypted, streaming, status) "
                "VALUES ('legacy-model', 'legacy-model', 'textgen', 'internal', $1, $2, false, 'InService')",
                (upstream, legacy_seal(PROVIDER_KEY)),
            ),
            (
                "INSERT INTO rag_repositories (id, name, type, secret_encrypted, embedding_model, created_by) "
                "VALUES ('legacy-repo', 'legacy-repo', 'opensearch', $1, 'minilm-l6-v2', 'test')",
                (legacy_seal(REPOSITORY_SECRET),),
            ),
        )
    )
    yield url
    asyncio.run(run(asyncpg_dsn(lisa.database_url), (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', ())))


@pytest.fixture(scope="module")
def upgraded(legacy_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LisaServer]:
    """This release started on that database, as a local install (keys generated in its data directory)."""
    data_dir = tmp_path_factory.mktemp("upgraded") / "data"
    server = start_lisa(data_dir, local_models=False, database_url=legacy_database, env={"LISA_ENCRYPTION_KEY": ""})
    yield server
    server.proc.stop()


def stored(database_url: str) -> tuple[str, str]:
    async def read() -> tuple[str, str]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            model = await conn.fetchval("SELECT api_key_encrypted FROM models WHERE id = 'legacy-model'")
            repo = await conn.fetchval("SELECT secret_encrypted FROM rag_repositories WHERE id = 'legacy-repo'")
        finally:
            await conn.close()
        return model, repo

    return asyncio.run(read())


async def set_model_key(database_url: str, sealed: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("UPDATE models SET api_key_encrypted = $1 WHERE id = 'legacy-model'", sealed)
    finally:
        await conn.close()


def test_the_upgrade_reseals_stored_secrets_with_the_encryption_key(upgraded: LisaServer, legacy_database: str) -> None:
    key_file = upgraded.data_dir / "encryption-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    box = SecretBox(key_file.read_text().strip())
    model_key, repo_secret = stored(legacy_database)
    assert box.open(model_key) == PROVIDER_KEY and box.open(repo_secret) == REPOSITORY_SECRET
    old = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"lisa-model-keys:dev-secret").digest()))
    with pytest.raises(InvalidToken):
        old.decrypt(model_key.encode())
    # The provider key still reaches the provider.
    Recorder.seen.clear()
    with upgraded.client() as api:
        resp = api.post(
            "/v1/chat/completions", json={"model": "legacy-model", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert resp.status_code == 200, resp.text
    assert Recorder.seen == [f"Bearer {PROVIDER_KEY}"]


def printed_code(server: LisaServer) -> str:
    found = re.findall(rf"{re.escape(server.url)}/login\?code=(\S+)", server.proc.log.read_text())
    assert found, server.proc.log_tail()
    assert server.token not in server.proc.log.read_text()  # the admin token itself is never printed
    return str(found[-1])


def test_the_printed_code_signs_in_once_and_only_once(upgraded: LisaServer) -> None:
    code = printed_code(upgraded)
    with browser(upgraded) as web:
        page = web.get("/login", params={"code": code})
        assert page.status_code == 200 and "set-cookie" not in page.headers  # the link itself changes nothing
        done = web.post("/login", data={"code": code})
        assert done.status_code == 303 and web.cookies.get("lisa_session")
        assert web.get("/api/usage").status_code == 200  # the bootstrap admin
    with browser(upgraded) as again:
        second = again.post("/login", data={"code": code})
        assert second.status_code == 401 and "already used or expired" in second.json()["detail"]
        assert "set-cookie" not in second.headers


def test_a_changed_encryption_key_refuses_to_start_and_codes_expire(
    upgraded: LisaServer, legacy_database: str, tmp_path: Path
) -> None:
    with upgraded.client() as api:  # not the bootstrap token: each start revokes that one, and its sessions
        made = api.post("/api/tokens", json={"name": "kept", "username": "keeper", "groups": ["admin"]})
    with signed_in(upgraded, made.json()["token"]) as web:
        session = web.cookies["lisa_session"]
    upgraded.proc.stop()
    # Another data directory: another generated key, not the one the stored secrets are sealed with.
    argv = [LISA, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "other"), "--no-local-models"]
    env = {**os.environ, "LISA_DATABASE_URL": legacy_database, "LISA_ENCRYPTION_KEY": ""}
    returncode, output = run_serve(argv, env)
    assert returncode != 0 and "encryption key does not match" in output, output
    box = SecretBox((upgraded.data_dir / "encryption-key").read_text().strip())
    assert box.open(stored(legacy_database)[0]) == PROVIDER_KEY  # nothing re-sealed or lost
    # One value that the right key cannot open (sealed with another): an error, never a request without the key.
    foreign = SecretBox(secrets.token_urlsafe(32)).seal(PROVIDER_KEY)
    asyncio.run(set_model_key(legacy_database, foreign))
    # The right key again: the server starts; sessions live on; a code used after its lifetime does nothing.
    again = start_lisa(
        upgraded.data_dir,
        local_models=False,
        database_url=legacy_database,
        env={"LISA_ENCRYPTION_KEY": "", "LISA_SIGN_IN_CODE_SECONDS": "1"},
    )
    try:
        assert httpx.get(again.url + "/api/usage", cookies={"lisa_session": session}, timeout=30).status_code == 200
        Recorder.seen.clear()
        with again.client() as api:
            chat = {"model": "legacy-model", "messages": [{"role": "user", "content": "hi"}]}
            unreadable = api.post("/v1/chat/completions", json=chat)
        assert unreadable.status_code == 500, unreadable.text
        assert "API key of model 'legacy-model' cannot be decrypted" in unreadable.json()["error"]["message"]
        assert Recorder.seen == []
        code = printed_code(again)
        time.sleep(1.5)
        with browser(again) as web:
            late = web.post("/login", data={"code": code})
            assert late.status_code == 401 and "expired" in late.json()["detail"]
    finally:
        again.proc.stop()


def test_the_migration_needs_the_old_key_changes_nothing_without_it_and_goes_back(lisa: LisaServer) -> None:
    """Migration 0006 run directly (as `lisa serve` runs it, keys handed over): refusals leave the database as it
    was; the downgrade seals with the old key again."""
    name = "lisa_mig_" + secrets.token_hex(4)
    url = make_url(lisa.database_url).set(database=name).render_as_string(hide_password=False)

    async def sql(dsn: str, statement: str, *args: object) -> object:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(statement, *args)
        finally:
            await conn.close()

    asyncio.run(sql(asyncpg_dsn(lisa.database_url), f'CREATE DATABASE "{name}"'))
    migrate.upgrade(url, "0004")
    sealed = legacy_seal(PROVIDER_KEY, session_secret="the-old-configured-secret")
    insert = (
        "INSERT INTO models (id, name, type, hosting, base_url, api_key_encrypted, streaming, status) "
        "VALUES ('m', 'm', 'textgen', 'internal', 'http://127.0.0.1:9/v1', $1, false, 'InService')"
    )
    asyncio.run(sql(asyncpg_dsn(url), insert, sealed))
    new_key = secrets.token_urlsafe(32)

    def state() -> tuple[object, object]:
        version = asyncio.run(sql(asyncpg_dsn(url), "SELECT version_num FROM alembic_version"))
        return version, asyncio.run(sql(asyncpg_dsn(url), "SELECT api_key_encrypted FROM models"))

    with pytest.raises(migrate.MigrationRefused, match="needs the encryption key"):
        migrate.upgrade(url)
    with pytest.raises(migrate.MigrationRefused, match="set LISA_SECRET_KEY to the value"):
        migrate.upgrade(url, keys=migrate.MigrationKeys(new_key, ["dev-secret"]))
    assert state() == ("0004", sealed)  # each refusal left everything as it was
    migrate.upgrade(url, "0006", keys=migrate.MigrationKeys(new_key, ["the-old-configured-secret", "dev-secret"]))
    version, resealed = state()
    assert version == "0006" and SecretBox(new_key).open(str(resealed)) == PROVIDER_KEY
    migrate.downgrade(url, "0004", keys=migrate.MigrationKeys(new_key, ["the-old-configured-secret"]))
    version, back = state()
    old = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"lisa-model-keys:the-old-configured-secret").digest()))
    assert version == "0004" and old.decrypt(str(back).encode()).decode() == PROVIDER_KEY
    asyncio.run(sql(asyncpg_dsn(lisa.database_url), f'DROP DATABASE "{name}" WITH (FORCE)'))
