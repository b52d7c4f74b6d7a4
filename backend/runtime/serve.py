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

from backend.config import Settings
from backend.db import migrate
from backend.registry.schemas import ModelCreate
from backend.runtime.embedded_db import EmbeddedDatabase
from backend.runtime.local_models import MANAGED_BY, start_local_models
from backend.runtime.supervisor import Supervisor
from backend.services import Services

log = logging.getLogger("lisa")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


async def _prepare(settings: Settings, database_url: str, local: list[ModelCreate]) -> str | None:
    services = Services.build(settings, database_url)
    try:
        for model in local:
            await services.registry.upsert_managed(model, MANAGED_BY)
        if not settings.bootstrap_admin:
            return None
        return await services.tokens.rotate_bootstrap(
            username="admin",
            groups=[settings.admin_group],
            expires_at=datetime.now(UTC) + timedelta(days=settings.token_default_days),
        )
    finally:
        await services.engine.dispose()


def _banner(address: str, local: list[ModelCreate], secret: str | None, data_dir: Path) -> str:
    lines = [
        f"\nLISA is running at {address}",
        f"  OpenAI-compatible API: {address}/v1   (models: {', '.join(m.id for m in local) or 'none registered yet'})",
        f"  API docs:              {address}/docs (after signing in)",
    ]
    if secret is not None:
        lines += [
            f"  Sign-in link:          {address}/login?token={secret}",
            f"  Admin API token (also in {data_dir / 'admin-token'}): {secret}",
        ]
    lines.append("Press Ctrl-C to stop.\n")
    return "\n".join(lines)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(settings: Settings) -> None:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    database: EmbeddedDatabase | None = None
    supervisor = Supervisor()
    if settings.host not in LOOPBACK and not (settings.oidc_enabled or settings.allow_remote):
        raise SystemExit(
            f"refusing to listen on {settings.host} without an identity provider: configure OIDC "
            "(LISA_OIDC_ISSUER, LISA_OIDC_CLIENT_ID) or set LISA_ALLOW_REMOTE=true"
        )
    # SIGTERM behaves like Ctrl-C, so service managers stop us cleanly too.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        database_url = settings.database_url
        if not database_url:
            print(f"Starting embedded PostgreSQL in {settings.pgdata_dir}", flush=True)
            database = EmbeddedDatabase(settings.pgdata_dir)
            database_url = database.start()
        print("Applying database migrations", flush=True)
        migrate.upgrade(database_url)
        local: list[ModelCreate] = []
        if settings.local_models:
            print("Starting local model servers (llama.cpp gemma3-270m, MiniLM embeddings)", flush=True)
            local = start_local_models(settings, supervisor)
        address = f"http://{settings.host}:{settings.port}"
        secret = asyncio.run(_prepare(settings, database_url, local))
        if secret is not None:
            _write_private(data_dir / "admin-token", secret + "\n")
        _write_private(
            data_dir / "runtime.json",
            json.dumps(
                {"url": address, "database_url": database_url, "pid": os.getpid(), "children": supervisor.pids()}
            ),
        )
        os.environ["LISA_DATABASE_URL"] = database_url  # workers read it
        print(_banner(address, local, secret, data_dir), flush=True)
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
        supervisor.stop_all()
        if database is not None:
            database.stop()
        (data_dir / "runtime.json").unlink(missing_ok=True)
