"""Ingest local files into a LISA collection from a notebook or a script: ``ingest(...)`` / ``await aingest(...)``.

Over HTTP (the default) the files are uploaded to a running LISA in batches, one ingestion job per batch, and the
call waits for the jobs with a progress bar. With ``in_process=True`` no backend needs to run: the platform's own
services ingest in this process against the platform database (see ``ingestion.in_process``).

Interrupting an HTTP ingestion stops the waiting only: its jobs go on in the platform. Interrupting an in-process one
cancels its job.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ingestion.loaders import MAX_BYTES
from ingestion.plan import PathLike, batches, check_target, plan_files
from ingestion.results import FINAL, IngestError, IngestResult, Progress, tally

DEFAULT_URL = "http://127.0.0.1:8080"  # as the `lisa` CLI
POLL_SECONDS = 0.5
POLLED_AT_ONCE = 8  # unfinished jobs looked at per round; the platform runs them roughly in order
Chunking = Mapping[str, Any] | str | None


def resolve_url(url: str | None) -> str:
    return (url or os.environ.get("LISA_URL") or DEFAULT_URL).rstrip("/")


def resolve_token(token: str | None) -> str:
    """As the `lisa` CLI: the argument, ``$LISA_API_KEY``, or the data dir's ``admin-token`` (local mode)."""
    if token:
        return token
    if os.environ.get("LISA_API_KEY"):
        return os.environ["LISA_API_KEY"]
    path = Path(os.environ.get("LISA_DATA_DIR") or ".lisa") / "admin-token"
    if path.exists():
        return path.read_text().strip()
    raise IngestError(f"no API token: pass token=..., set LISA_API_KEY, or run next to a data dir with {path}")


def _tag_list(tags: str | Sequence[str]) -> list[str]:
    listed = [tags] if isinstance(tags, str) else list(tags)
    cleaned = [t.strip() for t in listed if t.strip()]
    for tag in cleaned:
        if "," in tag:
            raise IngestError(f"tag {tag!r} holds a comma; pass each tag separately")
    return cleaned


def _chunking_json(chunking: Chunking) -> str | None:
    if chunking is None:
        return None
    return chunking if isinstance(chunking, str) else json.dumps(dict(chunking))


def _chunking_spec(chunking: Chunking) -> dict[str, Any] | None:
    if chunking is None or isinstance(chunking, Mapping):
        return None if chunking is None else dict(chunking)
    try:
        spec = json.loads(chunking)
    except ValueError as exc:
        raise IngestError(f"chunking is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise IngestError('chunking must be a JSON object like {"strategy": "fixed", "size": 512}')
    return spec


async def aingest(
    paths_or_folder: PathLike | Sequence[PathLike],
    repository: str,
    collection: str = "default",
    *,
    url: str | None = None,
    token: str | None = None,
    tags: str | Sequence[str] = (),
    chunking: Chunking = None,
    wait: bool = True,
    progress: bool = True,
    in_process: bool = False,
    database_url: str | None = None,
    max_file_bytes: int | None = None,
    batch_files: int = 100,
    batch_bytes: int = 32 * 1024 * 1024,
) -> IngestResult:
    """Ingest files and folders (searched recursively for supported types) into ``repository``/``collection``.

    ``tags`` label every chunk; ``chunking`` (a dict or its JSON, e.g. ``{"strategy": "tokens", "size": 256}``)
    overrides the collection's, where it allows that. Unsupported files, files over ``max_file_bytes`` (default: the
    server's default limit over HTTP, the platform's setting in-process) and second files of one name (uploads) are
    skipped up front, with the reason, rather than failing a batch. With ``wait`` the call returns once every job
    has ended; without, it returns the job ids at once (HTTP only: an in-process ingestion runs in this process).

    HTTP: ``url`` (default ``$LISA_URL`` or http://127.0.0.1:8080) and ``token`` (default ``$LISA_API_KEY``).
    In-process: ``database_url`` (default ``$LISA_DATABASE_URL``) and the platform's settings from the environment.
    Raises ``IngestError`` carrying the server's message when the platform refuses the ingestion.
    """
    check_target(repository, collection)
    tag_list = _tag_list(tags)
    if in_process:
        from ingestion.in_process import ingest_in_process

        return await ingest_in_process(
            paths_or_folder,
            repository,
            collection,
            tags=tag_list,
            chunking=_chunking_spec(chunking),
            wait=wait,
            progress=progress,
            database_url=database_url,
            max_file_bytes=max_file_bytes,
            batch_files=batch_files,
        )
    client = HttpIngestion(resolve_url(url), resolve_token(token), repository, collection)
    return await client.run(
        paths_or_folder,
        tags=tag_list,
        chunking=_chunking_json(chunking),
        wait=wait,
        progress=progress,
        max_file_bytes=max_file_bytes or MAX_BYTES,
        batch_files=batch_files,
        batch_bytes=batch_bytes,
    )


def ingest(
    paths_or_folder: PathLike | Sequence[PathLike],
    repository: str,
    collection: str = "default",
    *,
    url: str | None = None,
    token: str | None = None,
    tags: str | Sequence[str] = (),
    chunking: Chunking = None,
    wait: bool = True,
    progress: bool = True,
    in_process: bool = False,
    database_url: str | None = None,
    max_file_bytes: int | None = None,
    batch_files: int = 100,
    batch_bytes: int = 32 * 1024 * 1024,
) -> IngestResult:
    """``aingest`` for code without a running event loop; in Jupyter (whose loop runs) use ``await aingest(...)``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run = aingest(
            paths_or_folder,
            repository,
            collection,
            url=url,
            token=token,
            tags=tags,
            chunking=chunking,
            wait=wait,
            progress=progress,
            in_process=in_process,
            database_url=database_url,
            max_file_bytes=max_file_bytes,
            batch_files=batch_files,
            batch_bytes=batch_bytes,
        )
        return asyncio.run(run)
    raise RuntimeError(
        "ingest() cannot run inside a running event loop (as in a Jupyter notebook): "
        "use `await aingest(...)` with the same arguments instead"
    )


class HttpIngestion:
    """Uploads batches to ``POST .../collections/{c}/documents`` and follows the jobs at ``GET .../jobs/{id}``."""

    def __init__(self, url: str, token: str, repository: str, collection: str) -> None:
        self.url = url
        self.token = token
        self.repository = repository
        self.collection = collection

    async def _call(self, http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = await http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise IngestError(f"cannot reach LISA at {self.url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise IngestError(
                f"LISA refused {method} {path} ({resp.status_code}): {detail}", status_code=resp.status_code
            )
        return resp.json()

    async def run(
        self,
        paths: PathLike | Sequence[PathLike],
        *,
        tags: list[str],
        chunking: str | None,
        wait: bool,
        progress: bool,
        max_file_bytes: int,
        batch_files: int,
        batch_bytes: int,
    ) -> IngestResult:
        plan = await asyncio.to_thread(plan_files, paths, max_bytes=max_file_bytes, unique_names=True)
        groups = list(batches(plan.files, batch_files, batch_bytes))
        result = IngestResult(self.repository, self.collection, documents_total=plan.total)
        result.skipped += plan.skipped
        result.documents_skipped += len(plan.skipped)
        by_name = {p.name: str(p) for p in plan.files}
        form: dict[str, str] = {}
        if tags:
            form["tags"] = ",".join(tags)
        if chunking is not None:
            form["chunking"] = chunking
        base = f"/api/repositories/{self.repository}"
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = httpx.Timeout(300.0, connect=10.0)
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout) as http:
            # Refuse an unknown repository or collection before reading any file.
            await self._call(http, "GET", f"{base}/collections/{self.collection}")
            jobs: dict[str, dict[str, Any]] = {}
            for group in groups:
                parts = [
                    ("files", (p.name, await asyncio.to_thread(p.read_bytes), "application/octet-stream"))
                    for p in group
                ]
                try:
                    job = await self._call(
                        http, "POST", f"{base}/collections/{self.collection}/documents", files=parts, data=form
                    )
                except IngestError as exc:
                    raise IngestError(exc.message, status_code=exc.status_code, job_ids=jobs) from exc
                jobs[job["id"]] = job
            result.job_ids = list(jobs)
            if not wait:
                return tally(result, jobs.values(), by_name)
            bar = Progress(len(plan.files), f"{self.repository}/{self.collection}", progress)
            try:
                await self._follow(http, base, jobs, bar)
            finally:
                bar.close()
        return tally(result, jobs.values(), by_name)

    async def _follow(self, http: httpx.AsyncClient, base: str, jobs: dict[str, dict[str, Any]], bar: Progress) -> None:
        """Polls the unfinished jobs (a few at a time, in the order they were queued) until every one has ended."""
        bar.show(jobs.values())
        while True:
            waiting = [j for j in jobs if jobs[j]["status"] not in FINAL][:POLLED_AT_ONCE]
            if not waiting:
                return
            for job_id in waiting:
                jobs[job_id] = await self._call(http, "GET", f"{base}/jobs/{job_id}")
            bar.show(jobs.values())
            if any(jobs[j]["status"] not in FINAL for j in waiting):
                await asyncio.sleep(POLL_SECONDS)
