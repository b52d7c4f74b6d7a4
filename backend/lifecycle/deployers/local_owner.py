"""The owner's part of the local deployer: the models this backend process supervises (it holds their owner lock),
their servers run by its :class:`Supervisor`, and :meth:`LocalOwner.reconcile`, which makes a model's record true.

Servers are started from the event loop's thread or the supervisor's, never a pool thread: the parent-death signal
fires when the thread that started the process ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from backend.errors import BadRequest
from backend.lifecycle.deployers.local_process import new_port, port_free, runs, terminate
from backend.lifecycle.deployers.local_spec import HOST, LocalModelSpec, command
from backend.lifecycle.deployers.local_state import LocalState, ProcessRecord, server_name
from backend.runtime.supervisor import MAX_BACKOFF, Child, Supervisor, http_ok

log = logging.getLogger(__name__)
SERVER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass
class _Owned:
    """A model this process supervises: the owner lock's descriptor, and the generation it runs."""

    fd: int
    generation: int = 0
    child: Child | None = None  # None: this generation could not start (the record's failure says why)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "ended"
    return f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"


class LocalOwner:
    def __init__(
        self,
        state: LocalState,
        check: Callable[[LocalModelSpec], Path],
        *,
        stop_seconds: float,
        max_restarts: int,
        restart_delay: float,
        embedding_args: Sequence[str] = (),
    ) -> None:
        self.state, self.check = state, check
        self.embedding_args = list(embedding_args)
        self.stop_seconds, self.max_restarts, self.restart_delay = stop_seconds, max_restarts, restart_delay
        self.supervisor = Supervisor()
        self._owned: dict[str, _Owned] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def owns(self, model_id: str) -> bool:
        return model_id in self._owned

    def owned(self) -> set[str]:
        return set(self._owned)

    async def close(self) -> None:
        """Stop every server this process runs and let the models go (their records stay as they are)."""
        for model_id, owned in list(self._owned.items()):
            if owned.child is not None:
                await asyncio.to_thread(self.supervisor.remove, owned.child, self.stop_seconds)
            self._disown(model_id)

    def _lock(self, model_id: str) -> asyncio.Lock:
        return self._locks.setdefault(model_id, asyncio.Lock())

    async def reconcile(self, model_id: str) -> None:
        """Make the record true, where this process owns the model or can take it over: start the server of the
        record's generation, end an older one, or end it when the record says stopped (then let the model go)."""
        async with self._lock(model_id):
            record = self.state.read(model_id)
            wanted = record is not None and record.desired == "running"
            owned = self._owned.get(model_id)
            if owned is not None:
                child = owned.child
                current = record is not None and wanted and owned.generation == record.generation
                if current and (child is None or child in self.supervisor.children):
                    return  # running, restarting, given up or refused: as the record says
                if child is not None:
                    code = await asyncio.to_thread(self.supervisor.remove, child, self.stop_seconds)
                    self._ended(model_id, child, code)
                    owned.child = None
                if record is None or not wanted:
                    self._disown(model_id)
                    return
            else:
                if record is None:
                    return
                fd = self.state.try_own(model_id)
                if fd is None:
                    return  # another process runs it
                owned = self._owned[model_id] = _Owned(fd)
                record = self.state.read(model_id)
                if record is not None and record.pid is not None and runs(record.pid, model_id, record.port):
                    # Left by a backend process that died without taking it along (normally none: they get
                    # SIGTERM when their parent dies).
                    await asyncio.to_thread(terminate, record.pid, self.stop_seconds)
                    self._ended(model_id, None, None)
                if record is None or record.desired != "running":
                    self._disown(model_id)
                    return
                log.info("local deployer: taking over model %s (generation %d)", model_id, record.generation)
            self._spawn(model_id, owned, record)

    def _spawn(self, model_id: str, owned: _Owned, record: ProcessRecord) -> None:
        owned.generation, owned.child = record.generation, None
        spec = LocalModelSpec.model_validate(record.spec)
        try:
            model = self.check(spec)
        except BadRequest as exc:
            self._fail(model_id, record.generation, exc.message)
            return
        port = record.port
        if not port_free(port):
            port = new_port(self.state.ports())
            self.state.event(model_id, server_name(record.spec), "port", f"port {record.port} is taken; now {port}")
        self.state.rotate_log(model_id)
        child = Child(
            name=f"model {model_id}",
            argv=command(spec, model, port, self.embedding_args),
            healthy=http_ok(f"http://{HOST}:{port}/v1/models"),
            log_path=self.state.log_path(model_id),
            env={**SERVER_ENV, "OMP_NUM_THREADS": str(spec.threads)},
            inherit_env=False,
            restart_delay=self.restart_delay,
            max_restarts=self.max_restarts,
            on_exit=partial(self._on_exit, model_id, record.generation, server_name(record.spec)),
            on_spawn=partial(self._on_spawn, model_id, record.generation, server_name(record.spec), port),
        )
        try:
            self.supervisor.add(child)
        except OSError as exc:
            self._fail(model_id, record.generation, f"the server could not start: {exc}")
            return
        owned.child = child

    def _on_spawn(self, model_id: str, generation: int, server: str, port: int, child: Child) -> None:
        def started(record: ProcessRecord | None) -> ProcessRecord | None:
            if record is None:
                return None
            record.pid, record.pid_generation, record.port = child.pid, generation, port
            return record

        self.state.update(model_id, started)
        self.state.event(model_id, server, "started", f"pid {child.pid} on port {port}")

    def _on_exit(self, model_id: str, generation: int, server: str, child: Child) -> bool:
        """The supervisor found the server dead (monitor thread): restart it only while the record still wants
        this generation; record each crash, and the failure once it gives up."""
        record = self.state.read(model_id)
        if record is None or record.desired != "running" or record.generation != generation:
            return False  # stopped, deleted or replaced: the reconciler reaps it
        assert child.process is not None
        how = _exit_text(child.process.returncode)
        if child.max_restarts is not None and child.restarts >= child.max_restarts:
            tail = self.state.tail(model_id, 20).strip()
            failure = f"the server {how}, {child.restarts + 1} times in a row" + (
                f"; its last log lines:\n{tail}" if tail else ""
            )
            self._fail(model_id, generation, failure)
            return True
        delay = min(child.restart_delay * 2**child.restarts, MAX_BACKOFF)
        self.state.event(model_id, server, "exited", f"the server {how}; restarting in {delay:g}s")
        self.state.rotate_log(model_id)
        return True

    def _fail(self, model_id: str, generation: int, failure: str) -> None:
        def failed(record: ProcessRecord | None) -> ProcessRecord | None:
            if record is None or record.generation != generation:
                return None
            record.failure = failure
            return record

        if self.state.update(model_id, failed) is not None:
            record = self.state.read(model_id)
            self.state.event(model_id, server_name(record.spec if record else {}), "failed", failure)

    def _ended(self, model_id: str, child: Child | None, code: int | None) -> None:
        def ended(record: ProcessRecord | None) -> ProcessRecord | None:
            if record is None or (child is not None and record.pid != child.pid):
                return None
            record.pid = record.pid_generation = None
            return record

        record = self.state.update(model_id, ended)
        if record is not None:
            how = "stopped" if code is None or code in (0, -15) else _exit_text(code)
            self.state.event(model_id, server_name(record.spec), "stopped", f"the server {how}")

    def _disown(self, model_id: str) -> None:
        owned = self._owned.pop(model_id, None)
        if owned is not None:
            self.state.release(owned.fd)
