"""Untrusted files are parsed in worker processes, each file under a time limit, never in the caller's process.

A loader or chunker that burns CPU (a pathological input, a decompression bomb, a bug) then holds another process's
GIL, not the server's: the gateway keeps answering. A file whose parsing overruns the limit fails with that reason,
and its worker is killed and replaced. ``concurrent.futures.ProcessPoolExecutor`` cannot stop a running task, so
the pool is Pebble's ``ProcessPool``, which terminates the worker of a task that timed out (or was cancelled) and
starts a fresh one.

Workers are forked from a fork server that has the loaders imported already (a replacement starts in milliseconds
and inherits no threads or sockets of the server). The pool starts on first use and is closed with its owner
(``close``); optionally each worker's address space is capped (``RLIMIT_AS``), so a bomb that slips past the
loaders' own checks fails with MemoryError in the worker instead of exhausting the machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from typing import Any

from pebble import ProcessExpired, ProcessPool

from ingestion.document import Chunk, IngestionError
from ingestion.parsing import extract_file, parse_file

PRELOAD = ["ingestion.parsing", "ingestion.parser_pool"]


def _prepare_worker(memory_bytes: int) -> None:
    """Runs once in each worker before it takes a task: cap its memory, load what parsing needs."""
    if memory_bytes > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    import ingestion.parsing  # noqa: F401  (already there when forked from the fork server)


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


class ParserPool:
    """``await pool.parse(path, name, chunking, metadata, max_bytes)`` -> chunks (``extract``: the whole text), or
    IngestionError with the reason."""

    def __init__(self, workers: int = 2, timeout: float = 120.0, memory_bytes: int = 0) -> None:
        if workers < 1 or timeout <= 0:
            raise ValueError("a parser pool needs at least one worker and a positive time limit")
        self.workers = workers
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self._pool: ProcessPool | None = None
        self._lock = threading.Lock()

    def _started(self) -> ProcessPool:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPool(
                    max_workers=self.workers,
                    initializer=_prepare_worker,
                    initargs=(self.memory_bytes,),
                    context=_context(),
                )
            return self._pool

    async def parse(
        self, path: str, name: str, chunking: dict[str, Any], metadata: dict[str, Any], max_bytes: int
    ) -> list[Chunk]:
        chunks: list[Chunk] = await self._run(parse_file, (path, name, chunking, metadata, max_bytes), name)
        return chunks

    async def extract(self, path: str, name: str, max_bytes: int) -> str:
        """A file's whole text (``ingestion.parsing.extract_file``), under the same time limit; IngestionError."""
        text: str = await self._run(extract_file, (path, name, max_bytes), name)
        return text

    async def _run(self, function: Any, args: tuple[Any, ...], name: str) -> Any:
        # The first call starts the fork server and the workers: off the event loop, like everything that blocks.
        pool = self._pool if self._pool is not None else await asyncio.to_thread(self._started)
        future = pool.schedule(function, args=args, timeout=self.timeout)
        try:
            return await asyncio.wrap_future(future)
        except TimeoutError as exc:
            raise IngestionError(
                f"{name}: parsing took longer than the time limit of {self.timeout:g} s per file; "
                "the file was not ingested"
            ) from exc
        except ProcessExpired as exc:
            raise IngestionError(
                f"{name}: the parser process ended abnormally (exit code {exc.exitcode}); the file may be "
                "malformed or need more memory than parsing is allowed"
            ) from exc
        except MemoryError as exc:
            raise IngestionError(f"{name}: parsing needed more memory than it is allowed") from exc

    def close(self) -> None:
        """Stops the workers (a running parse is abandoned) and waits for them; the pool may start again later."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
            pool.join(timeout=10)
