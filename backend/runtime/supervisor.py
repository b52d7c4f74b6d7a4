"""Supervised child processes: started with a parent-death signal, restarted with backoff if they die, stopped
cleanly.

A child that dies is started again after ``restart_delay`` seconds, doubling with each further death up to
``MAX_BACKOFF`` (a child that stayed up for ``STABLE_SECONDS`` starts again from ``restart_delay``), at most
``max_restarts`` times in a row (None: for ever, as for the embedded database, without which nothing works).

Children are started for the life of the process (``start``, waiting until healthy) or added and removed while it
runs (``add``/``remove``: the local model deployer). A child's ``on_exit`` hook is asked, from the monitor thread,
each time it is found dead: it may change the child (a new command line) or answer False to let it stay down.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
MAX_BACKOFF = 30.0
STABLE_SECONDS = 60.0
# What a child that does not inherit LISA's environment still gets (never LISA_*: secrets, the database URL).
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH")


def die_with_parent(sig: int) -> Callable[[], None]:
    def prepare() -> None:
        """Runs in the child before exec (after any change of user, which would clear it): if LISA's process dies
        (even by SIGKILL), the child gets ``sig``."""
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig)
        os.setpgrp()  # own process group: a terminal's Ctrl-C reaches LISA, which then stops children in order

    return prepare


def http_ok(url: str) -> Callable[[subprocess.Popen[bytes]], bool]:
    """A health check: ``url`` answers 200."""

    def check(_process: subprocess.Popen[bytes]) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    return check


@dataclass
class Child:
    name: str
    argv: list[str]
    healthy: Callable[[subprocess.Popen[bytes]], bool]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # run as this system user (PostgreSQL refuses to run as root)
    stop_signal: int = signal.SIGTERM  # also what it gets when LISA dies
    restart_delay: float = 0.2
    max_restarts: int | None = 5
    inherit_env: bool = True  # False: only PASSED_ENV and env (a model server needs none of LISA's secrets)
    # Asked (from the monitor thread, under the supervisor's lock) each time the child is found dead, before a
    # restart is planned: it may change argv; False leaves it down and out of the supervisor.
    on_exit: Callable[[Child], bool] | None = None
    on_spawn: Callable[[Child], None] | None = None  # after each start, with the new process
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0  # in a row: reset once the child has stayed up for STABLE_SECONDS
    started_at: float = 0.0
    restart_at: float | None = None  # when a dead child is due to start again
    given_up: bool = False  # died max_restarts times in a row: left down

    @property
    def environment(self) -> dict[str, str]:
        if self.inherit_env:
            return {**os.environ, **self.env}
        return {**{k: os.environ[k] for k in PASSED_ENV if k in os.environ}, **self.env}

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class Supervisor:
    def __init__(self) -> None:
        self.children: list[Child] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    def _spawn(self, child: Child) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        with child.log_path.open("ab") as out:
            child.process = subprocess.Popen(
                child.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child.environment,
                user=child.user,
                preexec_fn=die_with_parent(child.stop_signal),
            )
        child.started_at = time.monotonic()
        child.restart_at = None
        if child.on_spawn is not None:
            child.on_spawn(child)

    def start(self, child: Child, ready_timeout: float = 180.0) -> None:
        """Start ``child`` and wait until it is healthy; watched (restarted) from then on."""
        self._spawn(child)
        with self._lock:
            self.children.append(child)
        self._wait_healthy(child, ready_timeout)
        self._ensure_monitor()

    def add(self, child: Child) -> None:
        """Start ``child`` and watch it at once, without waiting for its health (the caller checks it)."""
        with self._lock:
            self._spawn(child)
            self.children.append(child)
        self._ensure_monitor()

    def remove(self, child: Child, grace: float = 10.0) -> int | None:
        """Stop watching ``child`` and stop it (its stop signal, then SIGKILL after ``grace``); its exit status."""
        with self._lock:
            if child in self.children:
                self.children.remove(child)
        process = child.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(child.stop_signal)
        try:
            return process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def _ensure_monitor(self) -> None:
        with self._lock:
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
            if child.healthy(child.process):
                return
            time.sleep(0.25)
        raise RuntimeError(f"{child.name} did not become healthy within {timeout:.0f}s (log: {child.log_path})")

    def _watch(self) -> None:
        # Forked from this thread, restarted children get their parent-death signal when it ends: it lives as long
        # as the process (a daemon thread), so that is when LISA's process ends.
        while not self._stopping.wait(0.1):
            with self._lock:
                children = list(self.children)
            for child in children:
                with self._lock:  # a child removed meanwhile is neither checked nor restarted
                    if child in self.children:
                        self._check(child)

    def _check(self, child: Child) -> None:
        process, now = child.process, time.monotonic()
        if process is None or child.given_up or self._stopping.is_set():
            return
        if child.restart_at is None:
            if process.poll() is None:
                if child.restarts and now - child.started_at >= STABLE_SECONDS:
                    child.restarts = 0
                return
            if child.on_exit is not None and not self._still_wanted(child):
                self.children.remove(child)
                return
            if child.max_restarts is not None and child.restarts >= child.max_restarts:
                child.given_up = True
                log.error("%s exited with %s %d times in a row; giving up", child.name, process.returncode,
                          child.restarts + 1)  # fmt: skip
                return
            delay = min(child.restart_delay * 2**child.restarts, MAX_BACKOFF)
            child.restarts += 1
            child.restart_at = now + delay
            log.warning(
                "%s exited with %s; restarting in %.1fs (%d)", child.name, process.returncode, delay, child.restarts
            )
            return
        if now >= child.restart_at:
            try:
                self._spawn(child)
            except OSError as exc:
                log.error("could not restart %s: %s", child.name, exc)
                child.restart_at = now + min(child.restart_delay * 2**child.restarts, MAX_BACKOFF)

    @staticmethod
    def _still_wanted(child: Child) -> bool:
        assert child.on_exit is not None
        try:
            return child.on_exit(child)
        except Exception:  # the hook's failure must not stop the monitor; the child restarts as before
            log.exception("%s: exit hook failed", child.name)
            return True

    def watches(self, child: Child) -> bool:
        """``child`` was started (``start``, ``add``) and not removed since (it may have been given up on)."""
        with self._lock:
            return child in self.children

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process is not None]

    def stop_all(self, grace: float = 10.0) -> None:
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=2)
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(child.stop_signal)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
