"""Child processes for the benchmark: start each in its own session, stop every one of them.

Every process starts in its own session (process group), so stopping it also stops what it started;
``Processes`` stops all of them, newest first, when its ``with`` block ends, whatever the reason
(an error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
BASE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str,
    url: str,
    body: object = None,
    token: str | None = None,
    timeout: float = 10,
) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class Managed:
    """One child process in its own process group, its output going to a log file."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        unset: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.log = log
        full_env = {**os.environ, **BASE_ENV, **(env or {})}
        for key in unset:
            full_env.pop(key, None)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if http("GET", url, timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} was not ready at {url} within {timeout:.0f} s:\n{self.tail()}")

    def stop(self, first_signal: int = signal.SIGTERM, grace: float = 20) -> None:
        """Signal the process (Ctrl-C semantics for SIGINT), then its whole group, then kill the group."""
        if self.proc.poll() is None:
            self.proc.send_signal(first_signal)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                print(f"[bench] {self.name} ignored signal {first_signal} for {grace:.0f} s", file=sys.stderr)
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)  # stragglers in the group this process led
            except ProcessLookupError:
                break
            time.sleep(0.2 if sig == signal.SIGTERM else 0)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue


class Processes:
    """Starts processes and stops every one of them on exit, newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[Managed, int]] = []
        self.sessions: set[int] = set()  # of every process started, stopped ones included

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        while self.started:
            self.stop(self.started[-1][0])

    def start(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str] | None = None,
        unset: tuple[str, ...] = (),
        stop_signal: int = signal.SIGTERM,
    ) -> Managed:
        managed = Managed(name, cmd, self.log_dir / f"{name}.log", env, unset)
        self.started.append((managed, stop_signal))
        self.sessions.add(managed.proc.pid)
        return managed

    def stop(self, managed: Managed) -> None:
        for i, (item, sig) in enumerate(self.started):
            if item is managed:
                del self.started[i]
                item.stop(sig)
                return


def leftover_processes(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (e.g. a data dir), other than this process."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids
