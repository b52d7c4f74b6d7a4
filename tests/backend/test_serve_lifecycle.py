"""`lisa serve` as a user runs it, in its own data dir: the banner and login link, supervised model servers and
database, Ctrl-C, SIGTERM and SIGKILL leaving nothing running, a restart reusing the data dir, and a PostgreSQL an
earlier release left running replaced."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from backend.runtime.embedded_db import BundledPostgres
from tests.support import LISA, ROOT, LisaServer, free_port, start_lisa, wait_for

pytestmark = pytest.mark.slow

LOCAL_MODELS = {"gemma3-270m": "textgen", "minilm-l6-v2": "embedding"}


def postmasters(pgdata: Path) -> list[psutil.Process]:
    """PostgreSQL servers whose command line names this data directory (``postgres -D PGDATA ...``)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of procs runs (a zombie counts as gone); return those still running."""
    deadline = time.monotonic() + timeout
    while True:
        running = [p for p in procs if alive(p)]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.1)


def port_is_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


def stop_postgres(pgdata: Path) -> None:
    """Fast shutdown (SIGINT to the postmaster), then SIGKILL: what a crashed `lisa serve` may leave running."""
    servers = postmasters(pgdata)
    for proc in servers:
        proc.send_signal(signal.SIGINT)
    for proc in wait_gone(servers, 15):
        proc.kill()


class Janitor:
    """Starts `lisa serve` and, whatever a test's outcome, leaves no lisa, model server or postgres behind."""

    def __init__(self) -> None:
        self.servers: list[LisaServer] = []
        self.children: list[psutil.Process] = []
        self.pgdata: set[Path] = set()

    def start(self, data_dir: Path, *, local_models: bool = True) -> LisaServer:
        self.pgdata.add(data_dir.resolve() / "pgdata")
        server = start_lisa(data_dir, local_models=local_models)
        self.servers.append(server)
        self.children += [psutil.Process(pid) for pid in server.children]
        return server

    def cleanup(self) -> None:
        for server in self.servers:
            if server.proc.popen.poll() is None:
                server.proc.popen.kill()
                server.proc.popen.wait()
        for child in self.children:
            if alive(child):
                child.kill()
        for pgdata in self.pgdata:
            stop_postgres(pgdata)


@pytest.fixture
def janitor() -> Iterator[Janitor]:
    janitor = Janitor()
    try:
        yield janitor
    finally:
        janitor.cleanup()


@pytest.fixture(autouse=True)
def sigint_not_ignored() -> Iterator[None]:
    """A shell that runs the suite in the background ignores SIGINT, and children inherit an ignored signal;
    a user's terminal does not, so make sure `lisa serve` sees Ctrl-C as it would there."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def assert_running(server: LisaServer) -> list[psutil.Process]:
    """The runtime file, the model servers it names, and the private files; returns the model server processes."""
    runtime = json.loads((server.data_dir / "runtime.json").read_text())
    assert runtime["pid"] == server.proc.popen.pid
    assert runtime["url"] == server.url
    assert runtime["database_url"] == server.database_url
    assert len(runtime["children"]) == 2, runtime
    children = [psutil.Process(pid) for pid in runtime["children"]]
    for child in children:
        assert alive(child)
        assert child.ppid() == server.proc.popen.pid
    cmdlines = [" ".join(child.cmdline()) for child in children]
    assert any("llama_cpp.server" in c and "--model_alias gemma3-270m" in c for c in cmdlines), cmdlines
    assert any("backend.localmodels.embedding_server" in c for c in cmdlines), cmdlines
    for private in ("admin-token", "runtime.json"):
        mode = stat.S_IMODE((server.data_dir / private).stat().st_mode)
        assert mode == 0o600, f"{private} has mode {oct(mode)}"
    assert postmasters(server.data_dir.resolve() / "pgdata"), "the embedded PostgreSQL is not running"
    return children


def stop_and_assert_clean(server: LisaServer, sig: signal.Signals, children: list[psutil.Process]) -> None:
    started = time.monotonic()
    code = server.proc.stop(sig, timeout=30)  # raises if it ignores the signal for 30 s
    took = time.monotonic() - started
    assert code == 0, f"exit status {code} after {sig.name}:\n{server.proc.log_tail()}"
    assert took < 30
    assert "Stopping LISA" in server.proc.log_tail()
    # lisa waits for its children before it exits: none may outlive it.
    assert not [c.pid for c in children if alive(c)], "model servers outlived lisa"
    pgdata = server.data_dir.resolve() / "pgdata"
    assert not postmasters(pgdata), f"the embedded PostgreSQL for {pgdata} is still running"
    assert not (pgdata / "postmaster.pid").exists(), "PostgreSQL was not shut down cleanly"
    assert not (server.data_dir / "runtime.json").exists()
    assert port_is_closed(server.url)


def local_models(client: httpx.Client) -> dict[str, dict[str, object]]:
    resp = client.get("/api/models", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    return {m["id"]: m for m in resp.json()["data"]}


@pytest.mark.timeout(600)
def test_serve_stops_cleanly_and_a_restart_reuses_the_data_dir(tmp_path: Path, janitor: Janitor) -> None:
    data_dir = tmp_path / "data"
    first = janitor.start(data_dir)

    # The banner: the address, and a sign-in link with a one-time code (never the admin token itself, which is
    # in the data dir's admin-token file).
    banner = first.proc.log.read_text()
    assert f"LISA is running at {first.url}" in banner
    assert f"OpenAI-compatible API: {first.url}/v1" in banner
    link = re.search(rf"{re.escape(first.url)}/login\?code=(\S+)", banner)
    assert link is not None, banner
    login_token = (data_dir / "admin-token").read_text().strip()
    assert login_token not in banner and str(data_dir.resolve() / "admin-token") in banner
    assert httpx.get(f"{first.url}/api/models", timeout=30).status_code == 401

    with first.client(login_token) as api:
        models = local_models(api)
        for model_id, model_type in LOCAL_MODELS.items():
            assert models[model_id]["type"] == model_type
            assert models[model_id]["hosting"] == "internal"
            assert models[model_id]["status"] == "InService"
            assert models[model_id]["managed_by"] == "lisa-local"
            # The registered address is the live model server.
            base_url = str(models[model_id]["base_url"])
            assert httpx.get(f"{base_url}/models", timeout=30).status_code == 200
        created = api.post(
            "/api/models",
            json={
                "id": "kept-across-restarts",
                "type": "textgen",
                "hosting": "internal",
                "base_url": "http://127.0.0.1:9/v1",
            },
        )
        assert created.status_code == 201, created.text

    children = assert_running(first)
    stop_and_assert_clean(first, signal.SIGINT, children)

    # Start again on the same data dir: the database is reused, the login token rotated.
    second = janitor.start(data_dir)
    assert second.token != login_token
    refused = httpx.get(f"{second.url}/api/models", headers={"Authorization": f"Bearer {login_token}"}, timeout=30)
    assert refused.status_code == 401, refused.text
    assert "revoked" in refused.json()["detail"]
    with second.client() as api:
        models = local_models(api)
        assert models["kept-across-restarts"]["base_url"] == "http://127.0.0.1:9/v1"
        for model_id in LOCAL_MODELS:
            assert models[model_id]["status"] == "InService"
            assert httpx.get(f"{models[model_id]['base_url']}/models", timeout=30).status_code == 200
    new_children = assert_running(second)
    assert {c.pid for c in new_children}.isdisjoint(c.pid for c in children)
    stop_and_assert_clean(second, signal.SIGTERM, new_children)


def test_serve_refuses_a_non_loopback_address_without_allow_remote(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "LISA_ALLOW_REMOTE"}
    # Real secrets, as listening there needs (tests/backend/test_sessions_security.py): what is refused is the
    # address without an identity provider.
    env |= {"LISA_SECRET_KEY": secrets.token_urlsafe(32), "LISA_ENCRYPTION_KEY": secrets.token_urlsafe(32)}
    result = subprocess.run(
        [LISA, "serve", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "refusing to listen on 0.0.0.0" in message
    assert "LISA_ALLOW_REMOTE" in message
    # It refused before starting anything.
    assert not postmasters(data_dir.resolve() / "pgdata")
    assert not (data_dir / "runtime.json").exists()
    assert not (data_dir / "admin-token").exists()
    assert port_is_closed(f"http://127.0.0.1:{port}")


@pytest.mark.timeout(600)
def test_killing_lisa_takes_its_model_servers_and_database_down(tmp_path: Path, janitor: Janitor) -> None:
    server = janitor.start(tmp_path / "data")
    children = assert_running(server)
    children += postmasters(server.data_dir.resolve() / "pgdata")
    server.proc.popen.kill()  # SIGKILL: no chance to clean up; the children's parent-death signal must do it
    server.proc.popen.wait()
    still_running = wait_gone(children, 15)
    assert not still_running, [" ".join(p.cmdline()) for p in still_running]


@pytest.mark.timeout(600)
def test_a_postgres_left_running_on_the_data_dir_is_replaced_by_a_supervised_one(
    tmp_path: Path, janitor: Janitor
) -> None:
    """What an earlier release (whose PostgreSQL was a pg_ctl daemon) could leave after a crash: LISA stops it and
    runs its own, a child it supervises and stops on exit."""
    data_dir = tmp_path / "data"
    pgdata = data_dir.resolve() / "pgdata"
    first = janitor.start(data_dir, local_models=False)
    assert first.proc.stop(signal.SIGINT) == 0
    leftover = BundledPostgres(pgdata)
    leftover.prepare()
    stray = leftover.spawn(tmp_path / "leftover.log")

    restarted = janitor.start(data_dir, local_models=False)
    assert stray.wait(15) == 0  # a fast shutdown, asked by the new lisa
    assert [p.ppid() for p in postmasters(pgdata)] == [restarted.proc.popen.pid]
    # A second `lisa serve` on the same data dir must not take the running one's database away.
    second = subprocess.run(
        [LISA, "serve", "--no-local-models", "--port", str(free_port()), "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode != 0 and "another `lisa serve` uses this data directory" in second.stdout + second.stderr
    assert [p.ppid() for p in postmasters(pgdata)] == [restarted.proc.popen.pid]
    assert json.loads((data_dir / "runtime.json").read_text())["pid"] == restarted.proc.popen.pid
    with restarted.client() as api:
        assert api.get("/api/models").status_code == 200
    assert restarted.proc.stop(signal.SIGINT) == 0
    assert not postmasters(pgdata), "a clean stop left PostgreSQL running"


def model_servers(server: LisaServer, marker: str) -> list[psutil.Process]:
    """The running children of `lisa serve` whose command line contains ``marker``."""
    found = []
    for child in psutil.Process(server.proc.popen.pid).children():
        try:
            if alive(child) and marker in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


LLAMA, EMBEDDINGS = "llama_cpp.server", "backend.localmodels.embedding_server"


@pytest.mark.timeout(600)
def test_a_disabled_or_failed_bundled_model_keeps_its_status_and_stays_down_across_a_restart(
    tmp_path: Path, janitor: Janitor
) -> None:
    data_dir = tmp_path / "data"
    first = janitor.start(data_dir)
    with first.client() as api:
        # Disabled: Stopped, and `lisa serve` stops its server.
        disabled = api.post("/api/models/minilm-l6-v2/disable")
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["status"] == "Stopped"
        wait_for("the embedding server stops", lambda: not model_servers(first, EMBEDDINGS), 30)

        # Its server dying over and over: the supervisor gives up, and the model is Failed with the reason.
        killed: set[int] = set()
        deadline = time.monotonic() + 120
        while local_models(api)["gemma3-270m"]["status"] != "Failed":
            assert time.monotonic() < deadline, "gemma3-270m never became Failed"
            for proc in model_servers(first, LLAMA):
                if proc.pid not in killed:
                    killed.add(proc.pid)
                    proc.kill()
            time.sleep(0.1)
        assert len(killed) == 6, killed  # the first start and 5 restarts
        failed = local_models(api)["gemma3-270m"]
        reason = str(failed["status_reason"])
        assert "exited with status -9, 6 times in a row" in reason and "llama.log" in reason, reason
        events = api.get("/api/models/gemma3-270m/events", params={"limit": 100}).json()["data"]
        assert any(e["status"] == "Failed" and "6 times in a row" in e["message"] for e in events), events
    stop_and_assert_clean(first, signal.SIGINT, [])

    second = janitor.start(data_dir)
    assert second.children == [], "a stopped or failed bundled model's server was started"
    assert not model_servers(second, LLAMA) and not model_servers(second, EMBEDDINGS)
    assert "not started (stopped or failed; enable or delete them): gemma3-270m, minilm-l6-v2" in (
        second.proc.log_tail()
    )
    with second.client() as api:
        models = local_models(api)
        assert models["minilm-l6-v2"]["status"] == "Stopped"
        assert models["gemma3-270m"]["status"] == "Failed"
        assert models["gemma3-270m"]["status_reason"] == reason  # kept until an admin acts
        refused = api.post("/v1/embeddings", json={"model": "minilm-l6-v2", "input": "hello"})
        assert refused.status_code == 503, refused.text
        assert "Stopped" in refused.json()["error"]["message"]
        time.sleep(2)  # the watcher's ticks change nothing
        assert not model_servers(second, LLAMA) and not model_servers(second, EMBEDDINGS)

        # Enabled again: its server starts and it answers.
        enabled = api.post("/api/models/minilm-l6-v2/enable")
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["status"] == "InService"
        wait_for("the embedding server starts", lambda: model_servers(second, EMBEDDINGS), 30)

        def embeds() -> bool:
            resp = api.post("/v1/embeddings", json={"model": "minilm-l6-v2", "input": "hello"})
            return resp.status_code == 200 and len(resp.json()["data"][0]["embedding"]) == 384

        wait_for("the enabled embedding model answers", embeds, 120)
        assert not model_servers(second, LLAMA)  # the failed one stays down
        servers = model_servers(second, EMBEDDINGS)
    stop_and_assert_clean(second, signal.SIGTERM, servers)
