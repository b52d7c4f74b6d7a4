"""Supervised child processes: started with a parent-death signal, restarted if they crash, stopped cleanly."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: if LISA's process dies (even by SIGKILL), the child gets SIGTERM."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgrp()  # own process group: a terminal's Ctrl-C reaches LISA, which then stops children in order


@dataclass
class Child:
    name: str
    argv: list[str]
    health_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0


class Supervisor:
    def __init__(self, max_restarts: int = 5) -> None:
        self.children: list[Child] = []
        self._max_restarts = max_restarts
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    def _spawn(self, child: Child) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = child.log_path.open("ab")
        child.process = subprocess.Popen(
            child.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **child.env},
            preexec_fn=_die_with_parent,
        )
        out.close()

    def start(self, child: Child, ready_timeout: float = 180.0) -> None:
        self._spawn(child)
        self.children.append(child)
        self._wait_healthy(child, ready_timeout)
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, name="lisa-supervisor", daemon=True)
            self._monitor.start()

    def _wait_healthy(self, child: Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert child.process is not None
            if child.process.poll() is not None:
                tail = child.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{child.name} exited with {child.process.returncode} while starting:\n{tail}")
            try:
                with urllib.request.urlopen(child.health_url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{child.name} did not become healthy within {timeout:.0f}s (log: {child.log_path})")

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for child in self.children:
                if child.process is None or child.process.poll() is None or self._stopping.is_set():
                    continue
                if child.restarts >= self._max_restarts:
                    continue
                child.restarts += 1
                log.warning("%s exited with %s; restarting (%d)", child.name, child.process.returncode, child.restarts)
                time.sleep(min(2**child.restarts, 30) / 10)
                if not self._stopping.is_set():
                    self._spawn(child)

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process is not None]

    def stop_all(self, grace: float = 10.0) -> None:
        self._stopping.set()
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
