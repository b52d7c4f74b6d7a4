"""Chat benchmark: time to first token through the chat endpoint vs through /v1, and listing and searching 10,000
sessions.

One invocation starts the upstream stub (``bench/upstream_stub.py``, its slow port: each stream's first event at
once, the rest 10 ms later) and one ``lisa serve`` (no local models, its embedded PostgreSQL in a fresh data dir),
then:

* TTFT: sequential streamed requests on one keep-alive connection, alternating runs of ``/v1/chat/completions``
  and of ``POST /api/sessions/{id}/messages`` (a new question in a session with history; a fresh session every
  ``--turns-per-session`` turns), the same model on the same stub. TTFT is the time from sending the request to
  the first chunk with ``choices`` (the chat endpoint's own ``user_message``/``assistant_message`` events before
  it are not counted as tokens, but their time is in the figure). Per run the median; reported is the median of
  the runs' medians, and chat minus /v1 ("added").
* Sessions: 10,000 sessions of one user (4 messages each, loaded with SQL), then ``GET /api/sessions`` (first
  page, a later page) and ``?q=`` searches (a word in a few messages, a word in many titles), p50 and p99.

It holds an exclusive ``flock`` on ``/tmp/lisa-bench.lock`` while it runs (or runs under the caller's, when started
through ``flock /tmp/lisa-bench.lock ...``). The figures go to
stdout and to ``docs/benchmarks.md``, section "Chat".

    /work/main/.venv/bin/python -m bench.chat_ttft --runs 5 --requests 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import report, servers
from bench.gateway_doc import code_version, write_doc
from bench.loadgen import percentile
from bench.measure import log
from bench.processes import Processes, free_port, http

LOCK = Path("/tmp/lisa-bench.lock")
LOG_DIR = Path(tempfile.gettempdir()) / "lisa-bench-logs"
SECTION = "## Chat"
BAR_TTFT_MS, BAR_LIST_MS = 2.0, 50.0
WORDS = [
    "model",
    "prompt",
    "answer",
    "river",
    "mountain",
    "garden",
    "window",
    "paper",
    "music",
    "market",
    "travel",
    "budget",
    "report",
    "design",
    "server",
    "network",
    "kitchen",
    "recipe",
    "history",
    "science",
    "planet",
    "ocean",
    "forest",
    "winter",
    "summer",
    "meeting",
    "project",
    "account",
    "letter",
    "engine",
    "bridge",
    "castle",
    "doctor",
    "student",
    "teacher",
    "library",
    "museum",
    "theatre",
    "camera",
    "picture",
    "painting",
    "language",
]
RARE = "quokka"  # in the messages of a few sessions only
COMMON = "project"  # in many titles


def _lock_holders(path: Path) -> set[int]:
    """Pids holding a ``flock`` on ``path`` (from /proc/locks, matched by inode)."""
    inode = path.stat().st_ino
    holders = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
                holders.add(int(fields[4]))
    return holders


def _ancestors() -> set[int]:
    pids, pid = set(), os.getppid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


@contextlib.contextmanager
def bench_lock() -> Iterator[None]:
    """An exclusive ``flock`` on ``/tmp/lisa-bench.lock`` for the run; when started under
    ``flock /tmp/lisa-bench.lock python -m bench.chat_ttft``, the caller's lock is this run's."""
    with LOCK.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not _lock_holders(LOCK) & _ancestors():
                log(f"waiting for {LOCK} (another benchmark runs)")
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def start_lisa(procs: Processes, stub: servers.Stub, data_dir: Path) -> tuple[str, str, str]:
    """``lisa serve`` of this Python's environment; (base URL, admin token, database URL)."""
    port = free_port()
    exe = Path(sys.executable).parent / "lisa"
    cmd = [str(exe), "serve", "--no-local-models", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1", "--data-dir", str(data_dir)]
    server = procs.start("lisa-chat", cmd, unset=("LISA_DATABASE_URL",), stop_signal=signal.SIGINT)
    base = f"http://127.0.0.1:{port}"
    server.wait_ready(f"{base}/health", 300)
    token = (data_dir / "admin-token").read_text().strip()
    model = {"id": servers.SLOW_MODEL, "type": "textgen", "hosting": "internal",
             "base_url": stub.upstreams()[servers.SLOW_MODEL], "streaming": True}  # fmt: skip
    status, text = http("POST", f"{base}/api/models", model, token)
    if status != 201:
        raise RuntimeError(f"registering the stub gave {status}: {text[:300]}")
    database_url = json.loads((data_dir / "runtime.json").read_text())["database_url"]
    return base, token, database_url


def first_token_ms(client: httpx.Client, url: str, body: dict[str, object]) -> float:
    """Milliseconds from sending to the first chunk with choices; the rest of the stream is read (and dropped)."""
    started = time.perf_counter()
    ttft = None
    with client.stream("POST", url, json=body) as resp:
        if resp.status_code != 200:
            resp.read()
            raise RuntimeError(f"{url}: {resp.status_code} {resp.text[:300]}")
        event = None
        for line in resp.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line == "":
                event = None
            elif ttft is None and event is None and line.startswith("data:") and '"choices":[{' in line:
                ttft = (time.perf_counter() - started) * 1000
    if ttft is None:
        raise RuntimeError(f"{url}: no chunk with choices")
    return ttft


def measure_ttft(base: str, token: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Per path, the median TTFT of each run (runs alternate between the paths)."""
    headers = {"Authorization": f"Bearer {token}"}
    v1_body = {"model": servers.SLOW_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    medians: dict[str, list[float]] = {"v1": [], "chat": []}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        session: dict[str, Any] = {"id": "", "turns": 0}

        def chat_once() -> float:
            if not session["id"] or session["turns"] >= args.turns_per_session:
                created = client.post("/api/sessions", json={"title": "bench", "model": servers.SLOW_MODEL})
                session.update(id=created.json()["id"], turns=0)
            session["turns"] = int(session["turns"]) + 1
            return first_token_ms(client, f"/api/sessions/{session['id']}/messages", {"content": "hi"})

        def v1_once() -> float:
            return first_token_ms(client, "/v1/chat/completions", v1_body)

        paths = {"v1": v1_once, "chat": chat_once}
        for once in paths.values():  # warm-up
            for _ in range(20):
                once()
        for run in range(args.runs):
            for name, once in paths.items() if run % 2 == 0 else reversed(paths.items()):
                samples = [once() for _ in range(args.requests)]
                medians[name].append(statistics.median(samples))
                log(f"run {run + 1}/{args.runs} {name}: TTFT median {medians[name][-1]:.3f} ms")
    return medians


async def load_sessions(database_url: str, owner: str, count: int, seed: int = 7) -> None:
    """``count`` sessions of ``owner``, 4 messages each (a question and an answer, twice), in one COPY each."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    sessions, messages = [], []
    for n in range(count):
        sid = f"ses_bench{n:06d}"
        at = now - dt.timedelta(seconds=count - n)
        title = text(3) + (f" {COMMON}" if n % 10 == 0 else "")
        sessions.append((sid, owner, title, servers.SLOW_MODEL, "{}", f"msg_bench{n:06d}3", at, at))
        parent: str | None = None
        for k in range(4):
            mid = f"msg_bench{n:06d}{k}"
            words = text(40 if k % 2 == 0 else 150)
            if k == 1 and n % 1000 == 0:
                words += f" {RARE}"
            role = "user" if k % 2 == 0 else "assistant"
            messages.append((mid, sid, parent, role, words, "{}", "complete", at, at))
            parent = mid
    conn = await asyncpg.connect(database_url)
    try:
        await conn.copy_records_to_table(
            "chat_sessions",
            records=sessions,
            columns=["id", "owner", "title", "model", "settings", "active_leaf_id", "created_at", "updated_at"],
        )
        await conn.copy_records_to_table(
            "chat_messages",
            records=messages,
            columns=["id", "session_id", "parent_id", "role", "content", "metadata", "status", "created_at",
                     "updated_at"],
        )  # fmt: skip
        # The search vectors, as LISA keeps them (backend/chat/search.py), in one statement.
        await conn.execute(
            "UPDATE chat_sessions s SET search = strip(to_tsvector('simple', s.title) || to_tsvector('simple', "
            "(SELECT string_agg(m.content, ' ') FROM chat_messages m WHERE m.session_id = s.id))) "
            "WHERE s.id LIKE 'ses_bench%'"
        )
        await conn.execute("VACUUM ANALYZE chat_sessions")
        await conn.execute("ANALYZE chat_messages")
    finally:
        await conn.close()


def measure_lists(base: str, token: str, requests: int) -> dict[str, tuple[float, float, int]]:
    """Per query: p50 ms, p99 ms, sessions on the page."""
    results: dict[str, tuple[float, float, int]] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        second = client.get("/api/sessions", params={"limit": 50}).json()["next_cursor"]
        queries = {
            "list, first page (50)": {"limit": 50},
            "list, second page (50)": {"limit": 50, "cursor": second},
            f"search a word in 10 sessions' messages ('{RARE}')": {"limit": 50, "q": RARE},
            f"search a common word ('{COMMON}': 1,000 titles, most messages)": {"limit": 50, "q": COMMON},
            "search a word in no session": {"limit": 50, "q": "zzzyzzy"},
            "search two words, as prefixes ('quok proj')": {"limit": 50, "q": "quok proj"},
        }
        for label, params in queries.items():
            times = []
            found = 0
            for _ in range(requests):
                started = time.perf_counter()
                resp = client.get("/api/sessions", params=params)
                times.append((time.perf_counter() - started) * 1000)
                assert resp.status_code == 200, resp.text
                found = len(resp.json()["data"])
            times.sort()
            results[label] = (percentile(times, 50), percentile(times, 99), found)
            log(f"{label}: p50 {results[label][0]:.2f} ms, {found} found")
    return results


def render(args: argparse.Namespace, ttft: dict[str, list[float]], lists: dict[str, tuple[float, float, int]],
           elapsed: float, code: str) -> str:  # fmt: skip
    v1, chat = statistics.median(ttft["v1"]), statistics.median(ttft["chat"])
    added = chat - v1
    runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(ttft["v1"], ttft["chat"], strict=True))
    list_p50 = max(p50 for p50, _, _ in lists.values())
    lines = [
        SECTION,
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} min with:",
        "",
        f"    {' '.join(['python -m bench.chat_ttft', *sys.argv[1:]])}",
        "",
        *[line.replace(", LiteLLM -", "") for line in report.machine_facts("-")],
        f"- LISA code: {code}; one `lisa serve` worker, no local models, embedded PostgreSQL",
        f"- upstream: `bench/upstream_stub.py --impl raw`, its slow port ({servers.SLOW_DELAY_MS} ms after the "
        "first event)",
        "",
        "Time to first token, sequential requests on one keep-alive connection; median of "
        f"{args.runs} runs of {args.requests} requests each (the runs' medians, /v1 / chat: {runs} ms):",
        "",
        "| path | TTFT median ms |",
        "|---|--:|",
        f"| `POST /v1/chat/completions` | {v1:.2f} |",
        f"| `POST /api/sessions/{{id}}/messages` (question saved, history read, answer saved) | {chat:.2f} |",
        f"| added by the chat endpoint | {added:.2f} ({chat / v1:.2f}x) |",
        "",
        f"{args.sessions:,} sessions of one user ({args.sessions * 4:,} messages), `GET /api/sessions`, "
        f"{args.list_requests} sequential requests each:",
        "",
        "| request | p50 ms | p99 ms | sessions on the page |",
        "|---|--:|--:|--:|",
        *[f"| {label} | {p50:.2f} | {p99:.2f} | {found} |" for label, (p50, p99, found) in lists.items()],
        "",
        "| bar | value | met |",
        "|---|--:|---|",
        f"| TTFT added by the chat endpoint <= {BAR_TTFT_MS:g} ms | {added:.2f} ms | "
        f"{'yes' if added <= BAR_TTFT_MS else 'no'} |",
        f"| list and search of 10,000 sessions p50 <= {BAR_LIST_MS:g} ms (slowest request above) | "
        f"{list_p50:.2f} ms | {'yes' if list_p50 <= BAR_LIST_MS else 'no'} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100, help="TTFT requests per run and path")
    parser.add_argument("--turns-per-session", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--list-requests", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    started = time.monotonic()
    code = code_version()
    LOG_DIR.mkdir(exist_ok=True)
    with bench_lock(), Processes(LOG_DIR) as procs, tempfile.TemporaryDirectory(prefix="lisa-chat-bench-") as work:
        stub, _targets = servers.start_stub(procs, "raw")
        base, token, database_url = start_lisa(procs, stub, Path(work) / "data")
        ttft = measure_ttft(base, token, args)
        owner = json.loads(http("GET", f"{base}/api/users/me", token=token)[1])["username"]
        http("DELETE", f"{base}/api/sessions", token=token)
        log(f"loading {args.sessions:,} sessions")
        asyncio.run(load_sessions(database_url, owner, args.sessions))
        lists = measure_lists(base, token, args.list_requests)
    section = render(args, ttft, lists, time.monotonic() - started, code)
    print(section)
    if not args.no_write:
        write_doc(section)


if __name__ == "__main__":
    main()
