"""In-process ingestion: the platform's own services in this Python process, against the platform database.

No backend needs to run. The files are planned and batched here, as for an upload; the work is the backend's, behind
its one facade for this library (``backend.rag.local_ingest``, which documents how the jobs run, are interrupted and
are ended when their process dies). This module imports it lazily, inside the call, so that importing the library
never imports the backend; that facade is the only backend module ``ingestion/`` may import (tests/test_layering.py).

Files are parsed in worker processes of this process (``ingestion.parser_pool``, stopped when the call ends), so
a script calling this needs the ``if __name__ == "__main__":`` guard that any program starting processes needs
(a notebook does not).

Interrupting the call (Ctrl-C, a notebook's stop button) cancels its unfinished jobs, as the API's cancel does.
Should the process die instead, the next in-process ingestion ends its jobs as cancelled the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ingestion.plan import MAX_BATCH_FILES, PathLike, batches, plan_files
from ingestion.results import IngestError, IngestResult, Progress, tally


async def ingest_in_process(
    paths: PathLike | Sequence[PathLike],
    repository: str,
    collection: str,
    *,
    tags: list[str],
    chunking: dict[str, Any] | None,
    wait: bool,
    progress: bool,
    database_url: str | None,
    max_file_bytes: int | None,
    batch_files: int,
) -> IngestResult:
    if not wait:
        raise IngestError(
            "in-process ingestion runs in this process, so it waits for its job: without waiting, send the files "
            "to a running LISA instead (in_process=False)"
        )
    from backend.rag.local_ingest import LocalPlatform  # the backend's facade for this library, and nothing else

    platform = LocalPlatform.from_environment(database_url)
    limit = max_file_bytes or platform.max_file_bytes
    plan = await asyncio.to_thread(plan_files, paths, max_bytes=limit, unique_names=False)
    result = IngestResult(repository, collection, documents_total=plan.total, documents_skipped=len(plan.skipped))
    result.skipped += plan.skipped
    bar: Progress | None = None

    def show(jobs: Sequence[Mapping[str, Any]]) -> None:
        nonlocal bar
        if bar is None:  # once the jobs exist: a refusal before then shows no bar
            bar = Progress(len(plan.files), f"{repository}/{collection}", progress)
        bar.show(jobs)

    try:
        jobs = await platform.ingest(
            repository,
            collection,
            list(batches(plan.files, min(batch_files, MAX_BATCH_FILES), max_bytes=2**62)),
            roots=plan.roots,
            tags=tags,
            chunking=chunking,
            max_file_bytes=limit,
            on_progress=show,
        )
    finally:
        if bar is not None:
            bar.close()
    result.job_ids = [job["id"] for job in jobs]
    return tally(result, jobs, {})
