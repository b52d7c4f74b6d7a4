"""What a notebook ingestion returns, the error it raises, and its progress bar (tqdm, a widget in Jupyter)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FINAL = frozenset({"completed", "failed", "cancelled"})


class IngestError(Exception):
    """A refused or failed ingestion: the server's ``detail`` (or a local reason), its HTTP status where there is one,
    and the ids of the jobs already created before the failure (they go on in the platform)."""

    def __init__(self, message: str, *, status_code: int | None = None, job_ids: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.job_ids = list(job_ids)


@dataclass(frozen=True)
class FileIssue:
    """A file that was not ingested, and why."""

    name: str
    reason: str
    path: str | None = None


@dataclass
class IngestResult:
    """Counts cover every file the call found: ``documents_total == done + failed + skipped`` once finished.

    ``skipped`` holds files refused before sending (unsupported type, over the size limit, a clashing name) and files
    the jobs skipped (unchanged since the last ingestion, identical content ingested under another name).
    """

    repository: str
    collection: str
    job_ids: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)  # job id -> last status seen
    documents_total: int = 0
    documents_done: int = 0
    documents_failed: int = 0
    documents_skipped: int = 0
    chunks: int = 0
    failures: list[FileIssue] = field(default_factory=list)
    skipped: list[FileIssue] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return all(status in FINAL for status in self.statuses.values())

    @property
    def ok(self) -> bool:
        """Every job completed and no document failed."""
        return not self.failures and all(status == "completed" for status in self.statuses.values())

    def summary(self) -> str:
        jobs = ", ".join(f"{j} ({self.statuses.get(j, 'unknown')})" for j in self.job_ids) or "none"
        lines = [
            f"{self.repository}/{self.collection}: {self.documents_done} ingested, {self.documents_failed} failed, "
            f"{self.documents_skipped} skipped of {self.documents_total} files; {self.chunks} chunks; jobs: {jobs}"
        ]
        lines += [f"  failed  {f.name}: {f.reason}" for f in self.failures]
        lines += [f"  skipped {s.name}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def tally(result: IngestResult, jobs: Iterable[Mapping[str, Any]], paths: Mapping[str, str]) -> IngestResult:
    """Adds the jobs' counts and their failed and skipped items to ``result``; ``paths`` maps an uploaded file's name
    to its local path (a server-path item's source is its path)."""
    for job in jobs:
        result.statuses[job["id"]] = job["status"]
        result.documents_done += job["documents_done"]
        result.documents_failed += job["documents_failed"]
        result.documents_skipped += job["documents_skipped"]
        result.chunks += job["chunks_done"]
        for item in job.get("items") or []:
            path = paths.get(item["name"]) or (None if "://" in item["source"] else item["source"])
            issue = FileIssue(item["name"], item.get("error") or item["status"], path)
            if item["status"] == "failed":
                result.failures.append(issue)
            elif item["status"] == "skipped":
                result.skipped.append(issue)
            elif item["status"] == "cancelled":  # counted by no job counter: a failure to the caller
                result.failures.append(FileIssue(issue.name, "cancelled before it was ingested", issue.path))
                result.documents_failed += 1
    return result


class Progress:
    """One bar over the documents of every job: done + failed + skipped of their total, chunks in the postfix."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=description, unit="doc", disable=not enabled, dynamic_ncols=True)

    def show(self, jobs: Iterable[Mapping[str, Any]]) -> None:
        listed = list(jobs)
        processed = sum(j["documents_done"] + j["documents_failed"] + j["documents_skipped"] for j in listed)
        chunks = sum(j["chunks_done"] for j in listed)
        failed = sum(j["documents_failed"] for j in listed)
        running = sum(1 for j in listed if j["status"] not in FINAL)
        self._bar.n = processed
        self._bar.set_postfix(chunks=chunks, failed=failed, jobs_running=running, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
