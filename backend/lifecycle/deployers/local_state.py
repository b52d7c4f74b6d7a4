"""What the local deployer keeps on disk, per model, under ``DATA_DIR/local-models/<key>/``: the record (the
deployment as it should be, and the process that runs it), its events, the server's log, and two lock files.

The record is the one truth every backend process shares: any process changes it (under ``mutex``, a short
``flock``), and the process holding ``owner`` (an ``flock`` kept while it supervises the model, which the kernel
releases when that process dies, however it dies) makes it so. Small files, written whole and renamed into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from backend.lifecycle.deployers.base import DeploymentEvent

MAX_EVENTS_BYTES = 256 * 1024  # the events file is cut to its newer half beyond this
MAX_LOG_BYTES = 8 * 1024 * 1024  # the server's log is rotated (one old file kept) beyond this, at a (re)start
MAX_TAIL_BYTES = 1024 * 1024  # the most a log tail reads


class ProcessRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model_id: str
    spec: dict[str, Any]  # the LocalModelSpec, as JSON
    port: int  # kept across stops, starts and updates (the registered endpoint stays); freed by delete
    desired: Literal["running", "stopped"]
    generation: int  # a new one for each change of spec and each start: older processes are replaced
    pid: int | None = None  # the server process, when one was started
    pid_generation: int | None = None  # the generation that process runs
    ready_pid: int | None = None  # the last server process that answered (its "ready" event is recorded)
    failure: str | None = None  # why the current generation is down for good (refused, kept crashing)
    updated_at: datetime


def server_name(spec: dict[str, Any]) -> str:
    """What runs a model of this spec (the events' resource type)."""
    return "llama.cpp" if spec.get("kind") == "gguf" else "embedding-server"


def _now() -> datetime:
    return datetime.now(UTC)


class LocalState:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, model_id: str) -> Path:
        # Model ids hold '/', ':' and '@'; a digest is a safe, fixed-length folder name.
        return self.root / hashlib.sha256(model_id.encode()).hexdigest()[:32]

    def log_path(self, model_id: str) -> Path:
        return self.folder(model_id) / "server.log"

    # ------------------------------------------------------------------------------------------ the record
    def read(self, model_id: str) -> ProcessRecord | None:
        return self._read(self.folder(model_id) / "record.json")

    @staticmethod
    def _read(path: Path) -> ProcessRecord | None:
        try:
            return ProcessRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None

    def records(self) -> list[ProcessRecord]:
        if not self.root.is_dir():
            return []
        found = (self._read(folder / "record.json") for folder in sorted(self.root.iterdir()) if folder.is_dir())
        return [r for r in found if r is not None]

    def update(
        self, model_id: str, change: Callable[[ProcessRecord | None], ProcessRecord | None], *, create: bool = False
    ) -> ProcessRecord | None:
        """Apply ``change`` to the record under the model's mutex and write what it returns (None: write nothing).
        Without ``create``, a model whose folder is gone (deleted) is left alone: ``change`` is not called."""
        folder = self.folder(model_id)
        if not folder.is_dir():
            if not create:
                return None
            folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        try:
            with self._mutex(folder):
                changed = change(self._read(folder / "record.json"))
                if changed is not None:
                    changed.updated_at = _now()
                    tmp = folder / f"record.{os.getpid()}.tmp"
                    tmp.write_text(changed.model_dump_json())
                    os.replace(tmp, folder / "record.json")
                return changed
        except FileNotFoundError:  # deleted meanwhile
            return None

    @contextlib.contextmanager
    def _mutex(self, folder: Path) -> Iterator[None]:
        fd = os.open(folder / "mutex.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for one read and one write
            yield
        finally:
            os.close(fd)

    def remove(self, model_id: str) -> None:
        """Everything of the model's: record, events, logs, locks."""
        shutil.rmtree(self.folder(model_id), ignore_errors=True)

    def ports(self) -> set[int]:
        return {r.port for r in self.records()}

    # ------------------------------------------------------------------------------------------ ownership
    def try_own(self, model_id: str) -> int | None:
        """The owner lock's descriptor when this call took it; None when another holder has it (or no model)."""
        folder = self.folder(model_id)
        if not folder.is_dir():
            return None
        fd = os.open(folder / "owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # closing the descriptor releases the flock

    def owned_elsewhere(self, model_id: str) -> bool:
        """Whether some holder (another process, or another descriptor of this one) supervises the model."""
        fd = self.try_own(model_id)
        if fd is None:
            return self.folder(model_id).is_dir()
        self.release(fd)
        return False

    # ------------------------------------------------------------------------------------------ events
    def event(self, model_id: str, resource_type: str, status: str, reason: str | None = None) -> None:
        folder = self.folder(model_id)
        if not folder.is_dir():
            return
        path = folder / "events.jsonl"
        line = json.dumps(
            {
                "id": uuid.uuid4().hex,
                "time": _now().isoformat(),
                "type": resource_type,
                "status": status,
                "reason": reason,
            }
        )
        with contextlib.suppress(FileNotFoundError), self._mutex(folder):  # deleted meanwhile: nothing to tell
            with path.open("a") as fh:
                fh.write(line + "\n")
            if path.stat().st_size > MAX_EVENTS_BYTES:
                lines = path.read_text().splitlines()
                path.write_text("".join(f"{kept}\n" for kept in lines[len(lines) // 2 :]))

    def events(self, model_id: str, limit: int) -> list[DeploymentEvent]:
        try:
            lines = (self.folder(model_id) / "events.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        out: list[DeploymentEvent] = []
        for line in lines[-limit:] if limit > 0 else []:
            with contextlib.suppress(ValueError, KeyError):
                raw = json.loads(line)
                out.append(
                    DeploymentEvent(
                        id=raw["id"],
                        time=datetime.fromisoformat(raw["time"]),
                        resource="process",
                        resource_type=raw["type"],
                        status=raw["status"],
                        reason=raw.get("reason"),
                    )
                )
        return out

    # ------------------------------------------------------------------------------------------ the log
    def rotate_log(self, model_id: str) -> None:
        path = self.log_path(model_id)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > MAX_LOG_BYTES:
                os.replace(path, path.with_suffix(".log.1"))

    def tail(self, model_id: str, lines: int) -> str:
        """The last ``lines`` lines of the server's log (at most ``MAX_TAIL_BYTES`` of it)."""
        try:
            with self.log_path(model_id).open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - MAX_TAIL_BYTES))
                data = fh.read()
        except FileNotFoundError:
            return ""
        text = data.decode("utf-8", errors="replace")
        if len(data) >= MAX_TAIL_BYTES:  # the first line read may be a partial one
            text = text.partition("\n")[2]
        kept = text.splitlines()[-lines:] if lines > 0 else []
        return "".join(f"{line}\n" for line in kept)
