"""Where the CPU goes while LISA ingests: CPU seconds of its embedding server, its backend process and PostgreSQL.

On a small machine ingestion and the embedding model share the cores, so whatever the backend (parsing, JSON,
job bookkeeping) and PostgreSQL (inserts, index maintenance) spend is taken from the model. ``CpuMeter.snapshot``
reads user + system seconds of each group; the difference of two snapshots is one phase's share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.support import LisaServer


@dataclass(frozen=True)
class Cpu:
    """CPU seconds (user + system) per process group."""

    embedding: float = 0.0  # the MiniLM embedding server
    backend: float = 0.0  # the LISA backend process (`lisa serve`, one worker, the ingestion worker in it)
    postgres: float = 0.0  # the embedded PostgreSQL server and its backends

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.embedding - other.embedding, self.backend - other.backend, self.postgres - other.postgres)


def _seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += times.user + times.system
    return total


class CpuMeter:
    def __init__(self, server: LisaServer) -> None:
        self.backend = psutil.Process(server.proc.popen.pid)
        self.embedding = [
            p for p in map(psutil.Process, server.children) if "embedding_server" in " ".join(p.cmdline())
        ]
        self.pgdata = str(Path(server.data_dir) / "pgdata")

    def _postgres(self) -> list[psutil.Process]:
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info.get("cmdline") or []
            if "-D" in cmdline and self.pgdata in cmdline:  # the postmaster; its children are the backends
                try:
                    return [process, *process.children(recursive=True)]
                except psutil.NoSuchProcess:
                    return []
        return []

    def snapshot(self) -> Cpu:
        return Cpu(_seconds(self.embedding), _seconds([self.backend]), _seconds(self._postgres()))
