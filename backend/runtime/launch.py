"""`lisa serve`: database, migrations, local model servers, bootstrap login, then uvicorn. Ctrl-C stops it all."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn

from backend.auth.tokens import hash_token
from backend.config import Settings
from backend.db import migrate
from backend.db.engine import create_engine
from backend.registry.schemas import ModelCreate
from backend.registry.secrets import KeyMismatch, SecretBox, verify_key
from backend.runtime.bundled import BundledWatcher, startable
from backend.runtime.embedded_db import DataDirInUse, EmbeddedDatabase
from backend.runtime.keys import with_keys
from backend.runtime.local_models import MANAGED_BY, Bundled, bundled_models
from backend.runtime.supervisor import Supervisor
from backend.services import Services

log = logging.getLogger("lisa")
OLD_DEFAULT_SECRET = "dev-secret"  # what releases before migration 0006 sealed stored secrets with, unless configured


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


async def _check_key(settings: Settings, database_url: str) -> None:
    engine = create_engine(database_url, 1)
    try:
        await verify_key(engine, SecretBox(settings.encryption_key.get_secret_value()))
    finally:
        await engine.dispose()


async def _prepare(settings: Settings, database_url: str, local: list[ModelCreate]) -> tuple[str, str] | None:
    """Registers the local models; in local mode, a fresh bootstrap admin token and a one-time sign-in code."""
    services = Services.build(settings, database_url)
    try:
        for model in local:
            await services.registry.upsert_managed(model, MANAGED_BY)
        if not settings.bootstrap_admin:
            return None
        token = await services.tokens.rotate_bootstrap(
            username="admin",
            groups=[settings.admin_group],
            expires_at=datetime.now(UTC) + timedelta(days=settings.token_default_days),
        )
        code = await services.sessions.create_code(
            hash_token(token), datetime.now(UTC) + timedelta(seconds=settings.sign_in_code_seconds)
        )
        return token, code
    finally:
        await services.engine.dispose()


def _banner(address: str, local: list[ModelCreate], code: str | None, settings: Settings) -> str:
    lines = [
        f"\nLISA is running at {address}",
        *([f"  App:                  {address}{settings.ui_path}/"] if settings.ui else []),
        f"  OpenAI-compatible API: {address}/v1   (models: {', '.join(m.id for m in local) or 'none registered yet'})",
        f"  API docs:              {address}/docs (after signing in)",
    ]
    if code is not None:
        seconds = settings.sign_in_code_seconds
        valid = f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"
        lines += [
            f"  Sign-in link:          {address}/login?code={code}   (works once, for {valid})",
            f"  Admin API token:       in {settings.data_dir.resolve() / 'admin-token'} (also signs in at {address}/login)",
        ]
    lines.append("Press Ctrl-C to stop.\n")
    return "\n".join(lines)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(settings: Settings) -> None:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    database: EmbeddedDatabase | None = None
    runtime_written = False
    supervisor = Supervisor()
    watcher: BundledWatcher | None = None
    if not settings.listens_on_loopback and not (settings.oidc_enabled or settings.allow_remote):
        raise SystemExit(
            f"refusing to listen on {settings.host} without an identity provider: configure OIDC "
            "(LISA_OIDC_ISSUER, LISA_OIDC_CLIENT_ID) or set LISA_ALLOW_REMOTE=true"
        )
    configured_secret = settings.secret_key.get_secret_value()
    settings = with_keys(settings)  # a local install's keys: generated once, kept in the data directory
    # SIGTERM behaves like Ctrl-C, so service managers stop us cleanly too.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        database_url = settings.database_url
        if not database_url:
            print(f"Starting embedded PostgreSQL in {settings.pgdata_dir}", flush=True)
            database = EmbeddedDatabase(
                settings.pgdata_dir, data_dir / "logs" / "postgres.log", settings.db_restart_seconds
            )
            try:
                database_url = database.start()
            except DataDirInUse as exc:
                raise SystemExit(f"refusing to start: {exc}") from None
        print("Applying database migrations", flush=True)
        legacy = [configured_secret, OLD_DEFAULT_SECRET] if configured_secret else [OLD_DEFAULT_SECRET]
        try:
            keys = migrate.MigrationKeys(settings.encryption_key.get_secret_value(), legacy)
            migrate.upgrade(database_url, keys=keys)
            asyncio.run(_check_key(settings, database_url))
        except (KeyMismatch, migrate.MigrationRefused) as exc:
            raise SystemExit(f"refusing to start: {exc}") from None
        bundled: list[Bundled] = bundled_models(settings) if settings.local_models else []
        local = [b.model for b in bundled]
        if bundled:
            to_start = asyncio.run(startable(database_url, bundled))
            held = ", ".join(b.model.id for b in bundled if b not in to_start)
            print("Starting local model servers (llama.cpp gemma3-270m, MiniLM embeddings)", flush=True)
            if held:
                print(f"  not started (stopped or failed; enable or delete them): {held}", flush=True)
            for item in to_start:
                supervisor.start(item.child)
        address = f"http://{settings.host}:{settings.port}"
        bootstrap = asyncio.run(_prepare(settings, database_url, local))
        if bootstrap is not None:
            _write_private(data_dir / "admin-token", bootstrap[0] + "\n")
        runtime_written = True
        _write_private(
            data_dir / "runtime.json",
            json.dumps(
                {"url": address, "database_url": database_url, "pid": os.getpid(), "children": supervisor.pids()}
            ),
        )
        os.environ["LISA_DATABASE_URL"] = database_url  # workers read it
        if bundled:
            watcher = BundledWatcher(database_url, supervisor, bundled)
            watcher.start()
        print(_banner(address, local, bootstrap[1] if bootstrap else None, settings), flush=True)
        uvicorn.run(
            "backend.main:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            http="httptools",
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    except KeyboardInterrupt:
        pass
    finally:
        print("Stopping LISA", flush=True)
        if watcher is not None:
            watcher.stop()
        supervisor.stop_all()
        if database is not None:
            database.stop()
        if runtime_written:  # never another running LISA's
            (data_dir / "runtime.json").unlink(missing_ok=True)
