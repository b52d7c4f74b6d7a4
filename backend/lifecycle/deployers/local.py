"""Models on this machine (the embedded default): each one a supervised server process, llama.cpp's for GGUF text
models and LISA's embedding server for sentence-transformers models, on a port of its own on the loopback address.

The deployment as it should be is a record on disk (:mod:`local_state`), which every backend process reads and
changes; the process holding the model's owner lock runs the server under its :class:`Supervisor` (restart with
backoff after a crash; left ``failed`` after ``max_restarts`` crashes in a row) and makes the record true. An
operation writes the record, then makes it true itself when it can take the lock, or ends the outdated server so
that its owner starts the new one; then it waits until the server answers (or stops answering). A backend process
that dies takes its servers with it (they get a parent-death signal) and drops its locks; the reconciler of any
backend process (``open``: every ``reconcile_seconds``) takes the models over and starts them again on their port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import httpx

from backend.errors import BadRequest
from backend.lifecycle.deployers.base import (
    MAX_LOG_LINES,
    Deployer,
    Deployment,
    DeploymentEvent,
    DeploymentFailed,
    DeploymentState,
    DeploymentTimeout,
    Progress,
)
from backend.lifecycle.deployers.local_owner import LocalOwner
from backend.lifecycle.deployers.local_process import alive, answers, new_port, runs
from backend.lifecycle.deployers.local_spec import HOST, LocalModelSpec, resolve_model_path
from backend.lifecycle.deployers.local_state import LocalState, ProcessRecord, server_name

if TYPE_CHECKING:
    from backend.config import Settings

log = logging.getLogger(__name__)


class LocalDeployer(Deployer[LocalModelSpec]):
    kind: ClassVar[str] = "local"

    def __init__(
        self,
        root: Path,
        model_dirs: list[Path],
        *,
        ready_seconds: float = 300.0,
        stop_seconds: float = 20.0,
        max_restarts: int = 5,
        restart_delay: float = 1.0,
        reconcile_seconds: float = 1.0,
        embedding_backend: str = "openvino",
        embedding_cache_dir: Path | None = None,
    ) -> None:
        self.state = LocalState(root)
        self.model_dirs = [d.resolve() for d in model_dirs]
        self.ready_seconds, self.stop_seconds = ready_seconds, stop_seconds
        self.reconcile_seconds = reconcile_seconds
        # sentence-transformers models run on the same backend as the bundled MiniLM, sharing its cache
        embedding_args = ["--backend", embedding_backend, "--cache-dir", str(embedding_cache_dir or root / "openvino")]
        self.owner = LocalOwner(
            self.state,
            self.check,
            stop_seconds=stop_seconds,
            max_restarts=max_restarts,
            restart_delay=restart_delay,
            embedding_args=embedding_args,
        )
        self._operations: dict[str, asyncio.Lock] = {}  # one operation per model at a time in this process
        self._client: httpx.AsyncClient | None = None  # made at the first health check
        self._reconciler: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalDeployer:
        return cls(
            settings.data_dir.resolve() / "local-models",
            settings.model_dirs,
            ready_seconds=settings.local_model_ready_seconds,
            stop_seconds=settings.local_model_stop_seconds,
            max_restarts=settings.local_model_max_restarts,
            embedding_backend=settings.embedding_backend,
            embedding_cache_dir=settings.embedding_cache_path,
        )

    def check(self, spec: LocalModelSpec) -> Path:
        """The model's file, or :class:`BadRequest` saying why it may not run (call it to refuse a spec early)."""
        return resolve_model_path(spec, self.model_dirs)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(trust_env=False)
        return self._client

    # ------------------------------------------------------------------------------------------ service
    async def open(self) -> None:
        """Start the reconciler: models whose owner died (a backend restart) are taken over and started again.
        Call it at start-up; the first operation starts it too."""
        if self._reconciler is None:
            self._reconciler = asyncio.create_task(self._reconcile_forever(), name="local-deployer")

    async def aclose(self) -> None:
        """Stop this process's servers (their records stay: the next backend process starts them again)."""
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
            self._reconciler = None
        await self.owner.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _reconcile_forever(self) -> None:
        while True:
            for model_id in {r.model_id for r in self.state.records()} | self.owner.owned():
                try:
                    await self.owner.reconcile(model_id)
                    if self.owner.owns(model_id):
                        await self._note_ready(model_id)
                except Exception:
                    log.exception("local deployer: reconciling %s failed", model_id)
            await asyncio.sleep(self.reconcile_seconds)

    async def _note_ready(self, model_id: str) -> None:
        """A server this process runs that answers for the first time (a restart after a crash) is recorded."""
        record = self.state.read(model_id)
        if record is None or record.pid is None or record.ready_pid == record.pid:
            return
        current = record.pid_generation == record.generation and alive(record.pid)
        if current and await answers(self._http(), record.port, model_id):
            self._ready(record)

    # ------------------------------------------------------------------------------------------ operations
    async def deploy(self, spec: LocalModelSpec, progress: Progress | None = None) -> Deployment:
        return await self._bring_up("create", spec, progress)

    async def update(self, spec: LocalModelSpec, progress: Progress | None = None) -> Deployment:
        return await self._bring_up("update", spec, progress)

    async def start(self, spec: LocalModelSpec, progress: Progress | None = None) -> Deployment:
        return await self._bring_up("start", spec, progress)

    async def stop(self, spec: LocalModelSpec, progress: Progress | None = None) -> Deployment:
        async with self._operation(spec.model_id):
            record = self.state.update(spec.model_id, partial(self._want, "stopped", None))
            if record is None:
                raise DeploymentFailed("stop", f"model {spec.model_id} has no local deployment")
            await self._settle_stopped("stop", record, progress)
            return await self._deployment(record)

    async def delete(self, model_id: str, progress: Progress | None = None) -> None:
        async with self._operation(model_id):
            record = self.state.update(model_id, partial(self._want, "stopped", None))
            if record is not None:
                await self._settle_stopped("delete", record, progress)
            self.state.remove(model_id)  # the port goes with the record

    async def status(self, model_id: str) -> Deployment | None:
        record = self.state.read(model_id)
        return None if record is None else await self._deployment(record)

    async def events(self, model_id: str, limit: int = 100) -> list[DeploymentEvent]:
        return await asyncio.to_thread(self.state.events, model_id, limit)

    async def logs(self, model_id: str, lines: int = 100) -> str | None:
        """The last ``lines`` lines of the model server's output; None when the model has no local deployment."""
        if not 1 <= lines <= MAX_LOG_LINES:
            raise BadRequest(f"lines must be from 1 to {MAX_LOG_LINES}", "lines")
        if self.state.read(model_id) is None:
            return None
        return await asyncio.to_thread(self.state.tail, model_id, lines)

    # ------------------------------------------------------------------------------------------ steps
    def _operation(self, model_id: str) -> asyncio.Lock:
        if self._reconciler is None:  # opened by its first operation (a deployer made on first use)
            self._reconciler = asyncio.create_task(self._reconcile_forever(), name="local-deployer")
        return self._operations.setdefault(model_id, asyncio.Lock())

    def _want(self, desired: str, spec: LocalModelSpec | None, record: ProcessRecord | None) -> ProcessRecord | None:
        """The record's change for an operation: a new generation when the spec changes, or the model (re)starts
        after a stop or a failure; the same one when it already runs as asked (the running server is kept)."""
        if spec is None:  # stop, delete
            if record is not None:
                record.desired = "stopped"
            return record
        wanted = spec.model_dump(mode="json")
        if record is None:
            port = new_port(self.state.ports())
            return ProcessRecord(
                model_id=spec.model_id, spec=wanted, port=port, desired="running", generation=1, updated_at=_utc()
            )
        if record.spec != wanted or record.desired != "running" or record.failure is not None:
            record.generation += 1
            record.failure = None
        record.spec, record.desired = wanted, "running"
        return record

    async def _bring_up(self, step: str, spec: LocalModelSpec, progress: Progress | None) -> Deployment:
        async with self._operation(spec.model_id):
            try:
                self.check(spec)
            except BadRequest as exc:
                raise DeploymentFailed(step, exc.message, resource="model_path") from None
            seen = {e.id for e in self.state.events(spec.model_id, 1000)}
            before = self.state.read(spec.model_id)
            record = self.state.update(spec.model_id, partial(self._want, "running", spec), create=True)
            assert record is not None
            if before is None or before.generation != record.generation:
                self.state.event(spec.model_id, server_name(record.spec), step, f"generation {record.generation}")
            await self.owner.reconcile(spec.model_id)
            self._end_outdated(record)
            return await self._wait_ready(step, spec.model_id, record.generation, seen, progress)

    def _end_outdated(self, record: ProcessRecord) -> None:
        """Owned by another process: its server of an older generation (or of a stopped model) gets SIGTERM, and
        its owner's supervisor, reading the record, lets it go and starts what the record says."""
        if self.owner.owns(record.model_id) or record.pid is None:
            return
        outdated = record.desired != "running" or record.pid_generation != record.generation
        if outdated and alive(record.pid) and runs(record.pid, record.model_id, record.port):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM)

    async def _wait_ready(
        self, step: str, model_id: str, generation: int, seen: set[str], progress: Progress | None
    ) -> Deployment:
        deadline = time.monotonic() + self.ready_seconds
        while True:
            await self._report(model_id, seen, progress)
            record = self.state.read(model_id)
            if record is None:
                raise DeploymentFailed(step, f"the deployment of {model_id} was deleted meanwhile")
            if record.desired != "running":
                raise DeploymentFailed(step, f"{model_id} was stopped meanwhile")
            generation = max(generation, record.generation)  # a later change overtook this one: wait for it
            if record.failure is not None and record.generation == generation:
                raise DeploymentFailed(step, record.failure, resource="process")
            current = record.pid_generation == generation and record.pid is not None and alive(record.pid)
            if current and await answers(self._http(), record.port, model_id):
                self._ready(record)
                await self._report(model_id, seen, progress)
                return await self._deployment(record)
            if not self.owner.owns(model_id) and not self.state.owned_elsewhere(model_id):
                await self.owner.reconcile(model_id)  # its owner is gone: this process runs it
            if time.monotonic() > deadline:
                tail = self.state.tail(model_id, 20).strip()
                raise DeploymentTimeout(
                    step,
                    f"the server did not answer within {self.ready_seconds:g}s"
                    + (f"; its last log lines:\n{tail}" if tail else ""),
                    resource="process",
                )
            await asyncio.sleep(0.25)

    def _ready(self, record: ProcessRecord) -> None:
        """Record that the server serves (once per server process: after a start, and after each restart)."""

        def mark(current: ProcessRecord | None) -> ProcessRecord | None:
            if current is None or current.pid != record.pid or current.ready_pid == record.pid:
                return None
            current.ready_pid = record.pid
            return current

        if self.state.update(record.model_id, mark) is not None:
            where = f"http://{HOST}:{record.port}/v1"
            self.state.event(record.model_id, server_name(record.spec), "ready", f"pid {record.pid} serves at {where}")

    async def _settle_stopped(self, step: str, record: ProcessRecord, progress: Progress | None) -> None:
        """After the record says stopped: the server ends (here, or by its owner), and the port stops answering."""
        model_id = record.model_id
        seen = {e.id for e in self.state.events(model_id, 1000)}
        self.state.event(model_id, server_name(record.spec), step, "stop requested")
        await self.owner.reconcile(model_id)
        self._end_outdated(record)
        deadline = time.monotonic() + self.stop_seconds + 10
        while True:
            await self._report(model_id, seen, progress)
            current = self.state.read(model_id) or record
            running = current.pid is not None and alive(current.pid) and runs(current.pid, model_id, current.port)
            if not running and not await answers(self._http(), current.port, model_id):
                return
            if not self.owner.owns(model_id) and not self.state.owned_elsewhere(model_id):
                await self.owner.reconcile(model_id)  # its owner is gone: this process ends it
            if time.monotonic() > deadline:
                raise DeploymentTimeout(step, f"pid {current.pid} did not stop", resource="process")
            await asyncio.sleep(0.2)

    async def _report(self, model_id: str, seen: set[str], progress: Progress | None) -> None:
        if progress is None:
            return
        for event in self.state.events(model_id, 1000):
            if event.id not in seen:
                seen.add(event.id)
                await progress(event)

    async def _deployment(self, record: ProcessRecord) -> Deployment:
        endpoint = f"http://{HOST}:{record.port}/v1"
        live = record.pid is not None and alive(record.pid) and runs(record.pid, record.model_id, record.port)
        reference = f"pid {record.pid}" if live else f"port {record.port}"

        def made(state: DeploymentState, detail: str, reason: str | None = None) -> Deployment:
            return Deployment(record.model_id, state, endpoint, reference, detail, reason)

        if record.desired == "stopped":
            return made(DeploymentState.in_progress, "stopping") if live else made(DeploymentState.stopped, "stopped")
        if record.failure is not None and not live:
            return made(DeploymentState.failed, "failed", record.failure)
        if live and record.pid_generation == record.generation:
            if await answers(self._http(), record.port, record.model_id):
                self._ready(record)
                return made(DeploymentState.ready, "running")
            return made(DeploymentState.in_progress, "starting")
        return made(DeploymentState.in_progress, "restarting" if record.ready_pid else "starting")


def _utc() -> datetime:
    return datetime.now(UTC)
