"""The database going away under load, and coming back: the embedded PostgreSQL killed (the supervisor restarts
it) and an external one over TCP stopped and started (a failover). During the outage /v1 keeps serving a caller
without limits from its caches, a caller with limits gets a clear 503, /api answers 503 with a reason within a
second or two, and nothing answers a plain 500; afterwards everything recovers without restarting LISA, and every
request served meanwhile has its usage row, once; the ingestion worker runs again."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from backend.db.engine import asyncpg_dsn
from tests.support import LisaServer, Proc, TcpPostgres, start_lisa

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@dataclass
class Outcome:
    who: str
    started: float
    seconds: float
    status: int
    content_type: str
    body: str

    def json(self) -> dict[str, object]:
        import json

        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


class Load:
    """Light traffic from threads until stopped: /v1 chat as a caller without limits (every 50 ms) and as one
    with limits (every 200 ms), /api/models as the admin (every 100 ms). Each answer is recorded."""

    def __init__(self, server: LisaServer, model: str, free: str, limited: str) -> None:
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        chat = {**CHAT, "model": model}
        self._loops = [
            ("free", free, lambda c: c.post("/v1/chat/completions", json=chat), 0.05),
            ("limited", limited, lambda c: c.post("/v1/chat/completions", json=chat), 0.2),
            ("api", server.token, lambda c: c.get("/api/models"), 0.1),
        ]
        self._server = server
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        for who, token, call, pause in self._loops:
            thread = threading.Thread(target=self._run, args=(who, token, call, pause), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, who: str, token: str, call: Callable[[httpx.Client], httpx.Response], pause: float) -> None:
        with self._server.client(token, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                resp = call(client)
                outcome = Outcome(who, started, time.monotonic() - started, resp.status_code,
                                  resp.headers.get("content-type", ""), resp.text)  # fmt: skip
                with self._lock:
                    self.outcomes.append(outcome)
                self._stop.wait(pause)

    def of(self, who: str, after: float = 0.0, before: float = float("inf")) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.who == who and after <= o.started < before]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)
    return time.monotonic()


@dataclass
class Callers:
    model: str
    free_user: str
    free: str
    limited_user: str
    limited: str


@pytest.fixture
def callers_for(faulty_upstream: Proc) -> Iterator[Callable[[LisaServer], Callers]]:
    """A model on the "ok" upstream, a caller without limits and one with (generous) limits, on a given server."""
    made: list[tuple[LisaServer, Callers]] = []

    def make(server: LisaServer) -> Callers:
        tag = secrets.token_hex(3)
        model, free_user, limited_user = f"outage-{tag}", f"outage-free-{tag}", f"outage-limited-{tag}"
        with server.client() as admin:
            body = {"id": model, "type": "textgen", "hosting": "internal", "base_url": faulty_upstream.url + "/v1",
                    "upstream_model": "ok"}  # fmt: skip
            assert admin.post("/api/models", json=body).status_code == 201
            free = admin.post("/api/tokens", json={"name": "f", "username": free_user, "groups": []}).json()["token"]
            limited = admin.post("/api/tokens", json={"name": "l", "username": limited_user, "groups": []})
            limits = {"rpm": 10_000, "budget_tokens": 10_000_000, "budget_period": "day"}
            assert admin.put(f"/api/limits/user/{limited_user}", json=limits).status_code == 200
        callers = Callers(model, free_user, free, limited_user, limited.json()["token"])
        made.append((server, callers))
        # Warm every cache the hot path reads: the routes, each caller's principal, the limit configuration.
        for token in (callers.free, callers.limited):
            with server.client(token) as client:
                resp = client.post("/v1/chat/completions", json={**CHAT, "model": model})
                assert resp.status_code == 200, resp.text
        return callers

    yield make
    for server, callers in made:
        if server.proc.popen.poll() is not None:
            continue  # a server of the test's own, stopped already
        with server.client() as admin:
            admin.delete(f"/api/limits/user/{callers.limited_user}")
            admin.delete(f"/api/models/{callers.model}")


def assert_served_through(load: Load, down: float, up: float) -> None:
    """What the outage looked like to clients, between the database going down and coming back."""
    everything = load.outcomes
    plain = [o for o in everything if not o.content_type.startswith("application/json")]
    assert not plain, f"answers that were not JSON: {[(o.who, o.status, o.body[:100]) for o in plain[:5]]}"
    assert not [o for o in everything if o.status >= 500 and o.status != 503], "a 5xx other than 503"
    # A caller without limits is served from the caches all along.
    free = load.of("free")
    assert free and all(o.status == 200 for o in free), [(o.status, o.body[:200]) for o in free if o.status != 200]
    assert len(load.of("free", down, up)) >= 5
    # /api needs the database: 503 with the reason, at once.
    # Requests that reached the database while it was down: started 0.1 s after it went, and before it came back.
    api = load.of("api", down + 0.1, up - 0.1)
    assert len(api) >= 5, "too few /api requests during the outage"
    assert all(o.status == 503 for o in api), [(o.status, o.body[:100]) for o in api]
    assert all(o.seconds < 2.0 for o in api), [o.seconds for o in api]
    assert all("database" in str(o.json()["detail"]) for o in api)
    # A caller with limits: refused with 503 (limits cannot be checked), in OpenAI's error shape.
    limited = load.of("limited", down + 0.1, up - 0.1)
    assert limited and all(o.status == 503 for o in limited), [(o.status, o.body[:100]) for o in limited]
    for o in limited:
        error = o.json()["error"]
        assert isinstance(error, dict)
        assert error["type"] == "service_unavailable" and "limits" in str(error["message"])
        assert o.seconds < 2.0


def assert_recovered(load: Load, after: float) -> None:
    for who in ("api", "limited", "free"):
        last = load.of(who, after)
        assert last and last[-1].status == 200, f"{who} did not recover: {[(o.status, o.body[:100]) for o in last]}"


def usage_requests(server: LisaServer, username: str) -> int:
    with server.client() as admin:
        resp = admin.get("/api/usage", params={"group_by": "user"})
        assert resp.status_code == 200, resp.text
        return sum(int(r["requests"]) for r in resp.json()["rows"] if r["username"] == username)


def assert_usage_complete(server: LisaServer, load: Load, callers: Callers) -> None:
    """Every /v1 request answered 200, during the outage included (plus the warm-up), has exactly one usage row."""
    expected = {
        callers.free_user: 1 + sum(o.status == 200 for o in load.of("free")),
        callers.limited_user: 1 + sum(o.status == 200 for o in load.of("limited")),
    }

    def counted() -> dict[str, int]:
        return {user: usage_requests(server, user) for user in expected}

    try:
        wait_until(lambda: counted() == expected, 20, "usage rows for every request served")
    except AssertionError:
        raise AssertionError(f"usage rows {counted()} for requests served {expected}") from None
    time.sleep(1.0)  # nothing written twice later on
    assert counted() == expected


def assert_worker_alive(server: LisaServer) -> None:
    """The ingestion worker (procrastinate) stopped when its connection failed; it runs again: a heartbeat within
    the last two intervals (LISA_RAG_HEARTBEAT_SECONDS, 2 s)."""

    async def live_workers() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(server.database_url))
        try:
            sql = "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - interval '4 seconds'"
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    wait_until(lambda: asyncio.run(live_workers()) > 0, 20, "a live ingestion worker")


def postmaster_pid(pgdata: Path) -> int | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return int(lines[0]) if len(lines) >= 8 and lines[7].strip() == "ready" else None


@pytest.mark.timeout(240)
def test_killing_the_embedded_database_under_load(tmp_path: Path, callers_for: Callable[[LisaServer], Callers]) -> None:
    # The supervisor waits 3 s before its first restart: an outage long enough to watch. Five records in memory at
    # most, so the batches buffered during the outage spill to disk.
    server = start_lisa(
        tmp_path / "data",
        local_models=False,
        env={"LISA_DB_RESTART_SECONDS": "3", "LISA_USAGE_BUFFER_RECORDS": "5"},
    )
    spill = server.data_dir / "usage-spill"
    saved = tmp_path / "saved-spill"
    saved.mkdir()
    try:
        callers = callers_for(server)
        pgdata = server.data_dir.resolve() / "pgdata"
        first = postmaster_pid(pgdata)
        assert first is not None and psutil.Process(first).ppid() == server.proc.popen.pid  # a child of LISA's
        with Load(server, callers.model, callers.free, callers.limited) as load:
            time.sleep(0.5)
            down = time.monotonic()
            psutil.Process(first).kill()  # kill -9
            # Usage of the requests served meanwhile waits on disk; keep a copy of a spilled batch.
            wait_until(lambda: any(spill.glob("*.usage.json")), 10, "usage batches spilled to disk")
            copied = []
            for path in spill.glob("*.usage.json"):
                try:
                    copied.append(shutil.copy(path, saved / path.name))
                except FileNotFoundError:
                    continue
            # An unknown token cannot be told apart from one created just before: 503, not 401.
            unknown = httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer lisa_" + "0" * 40})
            assert postmaster_pid(pgdata) in (None, first), "the outage ended too soon for the checks above"
            assert unknown.status_code == 503, unknown.text
            assert unknown.json()["error"]["type"] == "service_unavailable"
            up = down  # the last moment the database was seen down
            while postmaster_pid(pgdata) in (None, first):
                up = time.monotonic()
                assert up - down < 30, "the supervisor did not restart it"
                time.sleep(0.02)
            back = wait_until(lambda: bool(load.of("api", up)) and load.of("api", up)[-1].status == 200, 15,
                              "/api answers again")  # fmt: skip
            time.sleep(1.5)
        assert back - up < 10
        assert_served_through(load, down, up)
        assert_recovered(load, back)
        new = postmaster_pid(pgdata)
        assert new is not None and psutil.Process(new).ppid() == server.proc.popen.pid
        assert server.proc.popen.poll() is None  # the same LISA process throughout
        assert_usage_complete(server, load, callers)
        assert_worker_alive(server)
        assert not list(spill.glob("*.usage.json")), "spilled usage left unwritten"
        # A spilled batch replayed a second time (a crash between its commit and the file's removal) counts once.
        assert copied
        before = usage_requests(server, callers.free_user)
        for kept in copied:
            shutil.copy(kept, spill / Path(kept).name)
        wait_until(lambda: not list(spill.glob("*.usage.json")), 10, "the replayed spill file is consumed")
        assert usage_requests(server, callers.free_user) == before

        # LISA stopped while the database is away (its second death in a row: restarted after 6 s): what is still
        # in memory spills at shutdown, and the next start writes it.
        again_first = postmaster_pid(pgdata)
        assert again_first is not None
        psutil.Process(again_first).kill()
        with server.client(callers.free) as client:
            late = [client.post("/v1/chat/completions", json={**CHAT, "model": callers.model}) for _ in range(3)]
        assert [r.status_code for r in late] == [200, 200, 200]
        assert server.proc.stop() == 0
        assert "Traceback" not in server.proc.log.read_text().split("Stopping LISA")[-1]
        assert list(spill.glob("*.usage.json")), "nothing spilled at shutdown"
        server = start_lisa(tmp_path / "data", local_models=False)
        wait_until(lambda: usage_requests(server, callers.free_user) == before + 3, 20, "the spill written")
        assert not list(spill.glob("*.usage.json"))
    finally:
        server.proc.stop()
    assert server.proc.popen.returncode == 0, server.proc.log_tail()


@pytest.mark.timeout(240)
def test_stopping_and_starting_an_external_database_under_load(
    lisa_tcp: LisaServer, tcp_postgres: TcpPostgres, callers_for: Callable[[LisaServer], Callers]
) -> None:
    callers = callers_for(lisa_tcp)
    try:
        with Load(lisa_tcp, callers.model, callers.free, callers.limited) as load:
            time.sleep(0.5)
            tcp_postgres.stop(signal.SIGINT)  # a failover: the server goes away, connections are cut
            down = time.monotonic()
            time.sleep(2.5)
            up = time.monotonic()
            tcp_postgres.resume()  # on the same address
            back = wait_until(lambda: bool(load.of("api", up)) and load.of("api", up)[-1].status == 200, 15,
                              "/api answers again")  # fmt: skip
            time.sleep(1.5)
    finally:
        if tcp_postgres.process is None:
            tcp_postgres.resume()
    assert back - up < 10
    assert_served_through(load, down, up)
    assert_recovered(load, back)
    assert lisa_tcp.proc.popen.poll() is None
    assert_usage_complete(lisa_tcp, load, callers)
    assert_worker_alive(lisa_tcp)
