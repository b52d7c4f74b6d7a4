"""Hosted MCP: the stdio servers an admin registered, run by the backend as supervised child processes.

Each backend process runs its own copy of a stdio server, started on first use and kept running: one long-lived
``ClientSession`` over the process's stdin/stdout serves every call of that backend process (JSON-RPC requests are
matched by id, so calls run concurrently). The child runs in ``DATA_DIR/mcp/<server id>`` with only the basic
environment (PATH, HOME, ...) plus the server's own variables (never LISA's), its stderr appended to
``DATA_DIR/logs/mcp-<server id>.log``.

A process that ends is started again after a delay, doubling with each further end up to the supervisor's
``MAX_BACKOFF`` (a process that stayed up ``STABLE_SECONDS`` starts again from the first delay), as model servers
are (backend/runtime/supervisor.py); that runs in threads over ``subprocess``, this on the event loop, since the
SDK's stdio transport owns the process. Calls that arrive while it restarts wait for it (up to their timeout);
calls in flight when it ends fail. A changed command, arguments or environment, a disabled or deleted server stops
the process (``HostedServers.retire``); the next use starts the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage

from backend.mcp.client import ServerFailure, describe
from backend.mcp.schemas import ProcessStatus
from backend.mcp.store import ServerConfig
from backend.runtime.supervisor import MAX_BACKOFF, STABLE_SECONDS

log = logging.getLogger(__name__)
Item = SessionMessage | Exception


async def _pump(source: Any, sink: MemoryObjectSendStream[Item], on_end: Callable[[], None]) -> None:
    """Passes the server's messages on; when its stdout ends (the process died), says so at once (before the calls
    in flight learn it, so that none of them is handed the ended session again)."""
    try:
        async with sink:
            async for item in source:
                await sink.send(item)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
        pass
    finally:
        on_end()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class HostedServer:
    def __init__(self, config: ServerConfig, data_dir: Path, start_timeout: float, restart_delay: float = 0.5) -> None:
        assert config.command is not None
        self.id = config.id
        self.name = config.name
        self.key = config.process_key
        self._params = StdioServerParameters(
            command=config.command, args=list(config.args), env=dict(config.env), cwd=data_dir / "mcp" / config.id
        )
        self._log_path = data_dir / "logs" / f"mcp-{config.id}.log"
        self._start_timeout = start_timeout
        self._restart_delay = restart_delay
        self.state = "starting"
        self.restarts = 0
        self.started_at: datetime | None = None
        self.last_error: str | None = None
        self._session: ClientSession | None = None
        self._ready = asyncio.Event()
        self._failed = asyncio.Event()  # the latest start failed (cleared when the next one begins)
        self._served = False  # the latest start succeeded (its end is then a death, not a failed start)
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"lisa-mcp-{config.id}")

    def status(self) -> ProcessStatus:
        return ProcessStatus(
            state=self.state, restarts=self.restarts, started_at=self.started_at, last_error=self.last_error
        )

    async def session(self, timeout: float) -> ClientSession:  # noqa: ASYNC109 - waits for a (re)start
        """The running session; waits for a start in progress, at most ``timeout`` seconds."""
        if self._session is not None:
            return self._session
        try:
            async with asyncio.timeout(timeout):
                await _first(self._ready, self._failed, self._stop)
        except TimeoutError:
            raise ServerFailure(f"the server's process is not running yet ({self.state})") from None
        if self._session is None:
            why = f": {self.last_error}" if self.last_error else ""
            raise ServerFailure(f"the server's process could not be started{why}; it is started again shortly")
        return self._session

    async def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._failed.clear()
            began = asyncio.get_running_loop().time()
            self._served = False
            try:
                await self._serve_once()
            except Exception as exc:
                self.last_error = describe(exc)
                if not self._served:  # a start that failed: callers waiting for it are told at once
                    self._failed.set()
                log.warning("MCP server %s (%s): %s", self.name, self.id, self.last_error)
            finally:
                self._session = None
                self._ready.clear()
            if self._stop.is_set():
                break
            if asyncio.get_running_loop().time() - began >= STABLE_SECONDS:
                failures = 0
            delay = min(self._restart_delay * 2**failures, MAX_BACKOFF)
            failures += 1
            self.restarts += 1
            self.state = "restarting"
            log.warning("MCP server %s (%s) ended; starting it again in %.1fs", self.name, self.id, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
        self.state = "stopped"

    async def _serve_once(self) -> None:
        cwd = Path(str(self._params.cwd))
        await asyncio.to_thread(cwd.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self._log_path.parent.mkdir, parents=True, exist_ok=True)
        errlog = await asyncio.to_thread(self._log_path.open, "a")
        ended = asyncio.Event()

        def on_end() -> None:
            self._session = None
            self._ready.clear()
            ended.set()

        try:
            async with stdio_client(self._params, errlog=errlog) as (read, write):
                send: MemoryObjectSendStream[Item]
                receive: MemoryObjectReceiveStream[Item]
                send, receive = anyio.create_memory_object_stream[Item](0)
                async with anyio.create_task_group() as pumps:
                    pumps.start_soon(_pump, read, send, on_end)
                    async with ClientSession(receive, write) as session:
                        with anyio.fail_after(self._start_timeout):
                            await session.initialize()
                        if ended.is_set():
                            raise ServerFailure("the process ended as it started")
                        self._session, self.state, self._served = session, "running", True
                        self.started_at = datetime.now(UTC)  # last_error stays: why it last ended or failed
                        self._ready.set()
                        await _first(ended, self._stop)
                        self._session = None
                        self._ready.clear()
                    pumps.cancel_scope.cancel()
        finally:
            errlog.close()
        if ended.is_set() and not self._stop.is_set():
            raise ServerFailure(f"the process ended (its log: {self._log_path.name})")

    async def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._task), timeout=15)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class HostedServers:
    """The stdio servers this backend process runs, by server id."""

    def __init__(self, data_dir: Path, start_timeout: float) -> None:
        self._data_dir = data_dir
        self._start_timeout = start_timeout
        self._running: dict[str, HostedServer] = {}

    def status(self, server_id: str) -> ProcessStatus | None:
        hosted = self._running.get(server_id)
        return hosted.status() if hosted else None

    async def session(self, config: ServerConfig, timeout: float) -> ClientSession:  # noqa: ASYNC109
        """The session of the server's process, started (or restarted with a changed configuration) as needed."""
        while True:
            hosted = self._running.get(config.id)
            if hosted is None:
                hosted = self._running[config.id] = HostedServer(config, self._data_dir, self._start_timeout)
            if hosted.key == config.process_key:
                return await hosted.session(timeout)
            del self._running[config.id]  # before the wait, so that a concurrent call starts the new one just once
            await hosted.stop()

    async def retire(self, server_id: str) -> None:
        hosted = self._running.pop(server_id, None)
        if hosted is not None:
            await hosted.stop()

    async def stop(self) -> None:
        running, self._running = list(self._running.values()), {}
        await asyncio.gather(*(h.stop() for h in running), return_exceptions=True)
