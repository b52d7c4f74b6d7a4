"""How much CPU processes outside the benchmark used while it measured.

The machine may be shared (tests running beside the benchmark), and on 2 cores any other busy process
changes every figure. ``Meter`` snapshots the CPU time of every process and splits it into the
benchmark's own (its session, the sessions of the servers it started, and processes whose command line
names its work directory, e.g. PostgreSQL started by LISA, with their descendants) and everyone else's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    sid: int
    ticks: int  # user + system time in clock ticks (not that of reaped children: a parent reaping a
    # long-lived child would count all of the child's time at once)


def _snapshot() -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()  # state ppid pgrp session ... utime(11) stime(12)
        pid = int(entry.name)
        procs[pid] = Proc(pid, int(fields[1]), int(fields[3]), int(fields[11]) + int(fields[12]))
    return procs


def _cmdline_has(pid: int, marker: str) -> bool:
    try:
        return marker in (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _ours(procs: dict[int, Proc], sessions: set[int], marker: str) -> set[int]:
    ours = {p.pid for p in procs.values() if p.sid in sessions or (marker and _cmdline_has(p.pid, marker))}
    grew = True
    while grew:  # descendants of ours are ours
        new = {p.pid for p in procs.values() if p.ppid in ours and p.pid not in ours}
        ours |= new
        grew = bool(new)
    return ours


class Meter:
    """``start()`` then ``stop()``: the percent of all CPUs that other processes kept busy between them."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self._before: dict[int, Proc] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._before = _snapshot()
        self._t0 = time.monotonic()

    def stop(self, sessions: set[int]) -> float:
        """``sessions``: those of every process the benchmark started (each leads its own)."""
        after = _snapshot()
        elapsed = time.monotonic() - self._t0
        sessions = sessions | {os.getsid(0)}
        ours = _ours(after, sessions, self.marker) | _ours(self._before, sessions, self.marker)
        foreign = 0
        for pid, proc in after.items():
            if pid in ours:
                continue
            before = self._before.get(pid)
            foreign += proc.ticks - (before.ticks if before and before.sid == proc.sid else 0)
        capacity = elapsed * CLK_TCK * (os.cpu_count() or 1)
        return min(100.0, 100.0 * foreign / capacity) if capacity > 0 else 0.0
