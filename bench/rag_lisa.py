"""What the RAG benchmarks share: LISA started with its local models, its RAG API, quiet-CPU runs, the doc's header.

LISA is started as ``tests.support.start_lisa`` starts it for the integration tests (``lisa serve`` with the
embedded PostgreSQL and the local MiniLM embedding server). The machine may be shared: before each measured run
the benchmark waits for idle CPUs, and :class:`Quiet` reports how much CPU other processes took meanwhile, so a
disturbed run can be repeated.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench import cpuload
from bench.gateway_doc import code_version
from bench.rag_data import log
from bench.report import _cpu_times, cpu_busy
from tests.support import LisaServer, start_lisa

T = TypeVar("T")
REPOSITORY = "bench"
FINAL = {"completed", "failed", "cancelled"}


def start(work: Path, env: dict[str, str] | None = None) -> LisaServer:
    """``lisa serve`` with its local models and a fresh (or reused) data dir under ``work``."""
    os.environ.pop("LISA_DATABASE_URL", None)  # the embedded PostgreSQL, never a database of the caller's
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    data_dir = work / "lisa-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log(f"starting LISA (local models, embedded PostgreSQL) in {data_dir}")
    return start_lisa(data_dir, env=env)


def stop(server: LisaServer) -> None:
    server.proc.stop(timeout=60)


def api(client: httpx.Client, method: str, path: str, ok: Iterable[int] = (200,), **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    if response.status_code not in set(ok):
        raise RuntimeError(f"{method} {path} gave {response.status_code}: {response.text[:500]}")
    return response.json() if response.content else None


def ensure_collection(client: httpx.Client, collection_id: str) -> dict[str, Any]:
    """The benchmark repository (pgvector in the platform's database) and one collection in it, as an admin makes
    them; existing ones (a reused data dir) are kept."""
    api(client, "POST", "/api/repositories", (201, 409), json={"id": REPOSITORY, "name": "benchmark"})
    base = f"/api/repositories/{REPOSITORY}/collections"
    api(client, "POST", base, (201, 409), json={"id": collection_id})
    result: dict[str, Any] = api(client, "GET", f"{base}/{collection_id}")
    return result


def embedding_url(client: httpx.Client, model: str) -> str:
    """The OpenAI base URL of the embedding server LISA started (``.../v1``)."""
    card = api(client, "GET", f"/api/models/{model}")
    return str(card["base_url"]).rstrip("/")


def wait_job(client: httpx.Client, job_id: str, poll: float = 0.2, timeout: float = 7200) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = api(client, "GET", f"/api/repositories/{REPOSITORY}/jobs/{job_id}")
        if job["status"] in FINAL:
            return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} not finished after {timeout:.0f} s: {job}")
        time.sleep(poll)


class Others:
    """The share of all CPUs that processes outside the benchmark used between ``start()`` and ``stop()``.

    ``bench.cpuload.Meter`` adds up the CPU time of processes alive at both ends, so a test suite that starts and
    stops servers while a long run goes on is nearly invisible to it. Here the machine's busy time (``/proc/stat``)
    minus the benchmark's own is what the others used, short-lived processes included. The benchmark's own is its
    processes' CPU time plus that of their children reaped meanwhile (PostgreSQL's parallel workers, say).
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self._busy0, self._total0 = 0, 0
        self._before: dict[int, tuple[int, int]] = {}

    def _own(self) -> dict[int, tuple[int, int]]:
        """pid -> (session, CPU ticks of the process and of its reaped children) for the benchmark's processes."""
        procs = cpuload._snapshot()
        own = {}
        for pid in cpuload._ours(procs, {os.getsid(0)}, self.marker):
            try:
                fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            own[pid] = (procs[pid].sid, sum(int(f) for f in fields[11:15]))  # utime stime cutime cstime
        return own

    def start(self) -> None:
        self._before = self._own()
        self._busy0, self._total0 = _cpu_times()

    def stop(self) -> float:
        busy1, total1 = _cpu_times()
        after = self._own()
        own = 0
        for pid, (sid, ticks) in after.items():
            before = self._before.get(pid)
            own += ticks - (before[1] if before and before[0] == sid else 0)
        total = max(total1 - self._total0, 1)
        return max(0.0, min(100.0, 100.0 * (busy1 - self._busy0 - own) / total))


class Quiet:
    """Runs a measurement when the CPUs are idle and repeats it (up to ``retries`` times) when processes outside
    the benchmark took more than ``limit_pct`` of the CPUs meanwhile; keeps each kept run's foreign share."""

    def __init__(self, marker: str, limit_pct: float, wait_s: float, retries: int) -> None:
        self.meter = Others(marker)
        self.limit_pct, self.wait_s, self.retries = limit_pct, wait_s, retries
        self.foreign: list[float] = []
        self.waited = 0.0

    def wait(self) -> None:
        started = time.monotonic()
        busy = cpu_busy(0.5)
        while busy > self.limit_pct and time.monotonic() < started + self.wait_s:
            if time.monotonic() - started > 10:
                log(f"other processes keep {busy:.0f}% of the CPUs busy; waiting for a quiet machine")
            busy = cpu_busy(5 if time.monotonic() - started > 10 else 1)
        self.waited += time.monotonic() - started

    def run(self, what: str, measure: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            self.wait()
            self.meter.start()
            result = measure()
            foreign = self.meter.stop()
            if foreign <= self.limit_pct or attempt == self.retries:
                self.foreign.append(foreign)
                return result
            log(f"{what}: other processes used {foreign:.0f}% of the CPUs meanwhile; again")
        raise AssertionError("unreachable")

    def summary(self) -> str:
        if not self.foreign:
            return "-"
        return f"median {statistics.median(self.foreign):.0f}%, max {max(self.foreign):.0f}%"


def percentile(values: Iterable[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return math.nan
    rank = (len(data) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def med(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def header(command: str, elapsed: float, waited: float) -> list[str]:
    wait = f" (plus {waited / 60:.1f} min waiting for idle CPUs)" if waited >= 30 else ""
    return [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} min{wait} with:",
        "",
        f"    {command}",
        "",
    ]


def machine(code_at_start: str) -> list[str]:
    cpu, mem = "?", "?"
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1).strip() if match else "?"
        kb = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        mem = f"{int(kb.group(1)) / 1024**2:.1f} GiB" if kb else "?"
    except OSError:
        pass
    end = code_version()
    code = code_at_start if code_at_start == end else f"{code_at_start} at the start, {end} at the end"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (`nproc` = {len(os.sched_getaffinity(0))}); memory {mem}; "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- LISA code: {code}",
    ]
