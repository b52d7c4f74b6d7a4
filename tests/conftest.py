"""Session-wide real servers: LISA itself (embedded PostgreSQL + local models), test upstreams, a second embedded
PostgreSQL listening on TCP."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.secret_watch import SecretWatch, install
from tests.support import LisaServer, Proc, TcpPostgres, free_port, start_lisa, start_module, start_process

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One at-rest encryption key for every server of the session, as a deployment configures it for all its processes:
# servers sharing a database (replicas, in-process ingestion) must share it. Tests of the generated key file set
# LISA_ENCRYPTION_KEY="" for their own server.
os.environ.setdefault("LISA_ENCRYPTION_KEY", "test-" + secrets.token_urlsafe(32))
# One converted embedding model for every server of the session (each has a fresh data dir, whose default cache
# would convert MiniLM again, 15-40 s each); the cache is keyed by the model's files and locked while written, so
# runs going on at the same time share it safely. The OpenVINO backend's own tests use caches of their own.
os.environ.setdefault("LISA_EMBEDDING_CACHE_DIR", os.path.join(tempfile.gettempdir(), "lisa-test-embedding-cache"))


@pytest.fixture(scope="session", autouse=True)
def secret_watch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretWatch]:
    """Set up before, and torn down after, every other fixture: the verdict comes once every server has stopped."""
    watch = SecretWatch()
    uninstall = install(watch)
    yield watch
    uninstall()
    logs = watch.scan_files(tmp_path_factory.getbasetemp())
    assert not watch.leaks, f"secrets leaked ({len(watch.secrets)} watched, {logs} logs read):\n" + "\n".join(
        sorted(set(watch.leaks))[:50]
    )


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lisa")


@pytest.fixture(scope="session")
def ingest_root(session_tmp: Path) -> Path:
    """The server folder the session's LISA may bulk-ingest from (LISA_RAG_INGEST_ROOTS)."""
    root = session_tmp / "ingest-root"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def lisa(session_tmp: Path, ingest_root: Path) -> Iterator[LisaServer]:
    """The platform as `lisa serve` runs it: embedded PostgreSQL, llama.cpp gemma3-270m, MiniLM embeddings."""
    server = start_lisa(session_tmp / "data", env={"LISA_RAG_INGEST_ROOTS": json.dumps([str(ingest_root)])})
    yield server
    server.proc.stop()


@pytest.fixture(scope="session")
def admin(lisa: LisaServer) -> Iterator[httpx.Client]:
    with lisa.client() as client:
        yield client


@pytest.fixture(scope="session")
def lisa_peer(lisa: LisaServer, session_tmp: Path, ingest_root: Path) -> Iterator[LisaServer]:
    """A second backend process on the same database (as a second replica would be), with a short upstream timeout
    (the gateway's timeout tests). It runs no ingestion worker: with that 2 s timeout its embedding calls failed
    the documents of the session's jobs it took on a busy machine (tests/backend/rag/test_rag_jobs.py timed out
    waiting for them); the RAG tests run their own two-replica servers where replicas matter."""
    server = start_lisa(
        session_tmp / "peer",
        local_models=False,
        database_url=lisa.database_url,
        token=lisa.token,
        env={
            "LISA_BOOTSTRAP_ADMIN": "false",
            "LISA_UPSTREAM_READ_TIMEOUT": "2",
            "LISA_RAG_WORKER": "false",
            "LISA_RAG_INGEST_ROOTS": json.dumps([str(ingest_root)]),
        },
    )
    yield server
    server.proc.stop()


@pytest.fixture(scope="session")
def tcp_postgres(session_tmp: Path) -> Iterator[TcpPostgres]:
    """A second embedded PostgreSQL, listening on 127.0.0.1 (a free port): the external database over TCP. Never a
    PostgreSQL the machine happens to run. The outage tests stop and start it; it is running again after each."""
    server = TcpPostgres.start(session_tmp / "tcp-postgres")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tcp_database_url(tcp_postgres: TcpPostgres) -> str:
    """A fresh database on the TCP server."""
    return tcp_postgres.new_database()


@pytest.fixture(scope="session")
def lisa_tcp(tcp_database_url: str, session_tmp: Path) -> Iterator[LisaServer]:
    """LISA without local models on the TCP PostgreSQL (LISA_DATABASE_URL)."""
    server = start_lisa(session_tmp / "tcp", local_models=False, database_url=tcp_database_url)
    yield server
    server.proc.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """`moto_server` as a real process (S3, SQS, CloudFormation, ...); clients use dummy credentials."""
    port = free_port()
    argv = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    proc = start_process(argv, port=port, log=log, health="/moto-api/", deadline=60)
    yield proc
    proc.stop(signal.SIGTERM)


@pytest.fixture(scope="session")
def faulty_upstream(session_tmp: Path) -> Iterator[Proc]:
    proc = start_module("tests.servers.faulty_upstream", session_tmp)
    yield proc
    proc.stop(signal.SIGKILL)  # it holds deliberately stalled streams open


@pytest.fixture(scope="session")
def image_server(session_tmp: Path) -> Iterator[Proc]:
    proc = start_module("tests.servers.image_server", session_tmp)
    yield proc
    proc.stop()
