"""The Documents tab: the repositories and collections one may see, uploads (one ingestion job per upload), the
jobs updating live while they run (polled by a ``gr.Timer``; cancel), and the document library (list, download,
delete). ``upload_rag_docs`` hides the upload part and ``show_rag_library`` the library for the users the toggles
apply to (the backend refuses either way)."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import gradio as gr
import pandas as pd

from frontend.backend import Backend, shows_errors
from frontend.client import BackendError
from frontend.client_rag import RagClient
from frontend.page_load import PageLoad
from frontend.schemas_rag import Document, Job

POLL_SECONDS = 1.0
JOB_COLUMNS = ["Job", "Collection", "Status", "Files done", "Failed", "Skipped", "Chunks", "Note"]
DOC_COLUMNS = ["Name", "Collection", "Size", "Chunks", "Tags", "Ingested by", "Added (UTC)"]
SAFE_NAME = re.compile(r"[^\w.\- ]+")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def job_rows(jobs: list[Job]) -> pd.DataFrame:
    rows = []
    for job in jobs:
        failures = [f"{i.name}: {i.error}" for i in job.items or [] if i.error]
        note = job.error or "; ".join(failures)
        rows.append([
            job.id, job.collection_id, job.status.replace("_", " "), f"{job.documents_done}/{job.documents_total}",
            job.documents_failed, job.documents_skipped, job.chunks_done, note,
        ])  # fmt: skip
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def doc_rows(docs: list[Document]) -> pd.DataFrame:
    rows = [
        [d.name, d.collection_id, human_size(d.size), d.chunk_count, ", ".join(d.tags), d.ingested_by,
         d.created_at.strftime("%Y-%m-%d %H:%M")]
        for d in docs
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=DOC_COLUMNS)


DOWNLOADS = Path(tempfile.gettempdir()) / "lisa-ui-downloads"
DOWNLOAD_TTL_S = 300.0


def download_path(name: str, content: bytes) -> str:
    """The original, in a fresh private folder under a name that cannot leave it. Gradio copies it into its own
    cache when the event returns, so copies older than a few minutes are removed here on the next download."""
    DOWNLOADS.mkdir(mode=0o700, exist_ok=True)
    cutoff = time.time() - DOWNLOAD_TTL_S
    for old in DOWNLOADS.iterdir():
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
    safe = SAFE_NAME.sub("_", Path(name).name).strip(" .") or "document"
    target = Path(tempfile.mkdtemp(dir=DOWNLOADS)) / safe[:200]
    target.write_bytes(content)
    return str(target)


class DocumentsTab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def rag(self, request: gr.Request) -> RagClient:
        return RagClient(self.backend.client(request))

    def build(self) -> None:
        with gr.Tab("Documents", id="documents", elem_id="lisa-docs-tab"):
            self.notice = gr.Markdown(elem_id="lisa-docs-notice")
            with gr.Row():
                self.repository = gr.Dropdown(choices=[], label="Repository", elem_id="lisa-docs-repo")
                self.collection = gr.Dropdown(choices=[], label="Collection", elem_id="lisa-docs-collection")
                self.refresh = gr.Button("Refresh", scale=0, elem_id="lisa-docs-refresh")
            with gr.Column(elem_id="lisa-docs-upload") as self.upload_part:
                self.files = gr.File(
                    file_count="multiple", type="filepath", label="Files to add", elem_id="lisa-docs-files"
                )
                with gr.Row():
                    self.tags = gr.Textbox(label="Tags (comma-separated)", elem_id="lisa-docs-tags")
                    self.send = gr.Button("Upload and ingest", variant="primary", elem_id="lisa-docs-send")
            with gr.Column(elem_id="lisa-docs-jobs-part"):
                gr.Markdown("### Ingestion jobs")
                self.jobs = gr.Dataframe(
                    pd.DataFrame(columns=JOB_COLUMNS), interactive=False, elem_id="lisa-docs-jobs", wrap=True
                )
                with gr.Row():
                    self.job = gr.Dropdown(choices=[], label="Running job", elem_id="lisa-docs-job")
                    self.cancel = gr.Button("Cancel job", variant="stop", scale=0, elem_id="lisa-docs-cancel")
            with gr.Column(elem_id="lisa-docs-library") as self.library_part:
                gr.Markdown("### Document library")
                self.documents = gr.Dataframe(
                    pd.DataFrame(columns=DOC_COLUMNS), interactive=False, elem_id="lisa-docs-list", wrap=True
                )
                with gr.Row():
                    self.document = gr.Dropdown(choices=[], label="Document", elem_id="lisa-docs-doc")
                    self.download = gr.DownloadButton("Download", elem_id="lisa-docs-download", interactive=False)
                    self.delete = gr.Button("Delete", variant="stop", elem_id="lisa-docs-delete")
            self.timer = gr.Timer(POLL_SECONDS, active=False)

    def wire(self, demo: gr.Blocks, page: PageLoad) -> None:
        where = [self.repository, self.collection]
        listing = [self.jobs, self.job, self.timer, self.documents, self.document, self.download]
        page.add(self.on_load, [], [self.upload_part, self.library_part, self.notice])
        page.add(self.load_library, where, [*where, *listing])
        self.repository.input(self.list_collections, where, [self.collection]).then(self.show, where, listing)
        self.collection.input(self.show, where, listing)
        self.refresh.click(self.list_repositories, [self.repository], [self.repository]).then(
            self.list_collections, where, [self.collection]
        ).then(self.show, where, listing)
        self.send.click(self.upload, [*where, self.files, self.tags], [self.files, self.timer]).then(
            self.show, where, listing
        )
        self.timer.tick(self.show, where, listing)
        self.cancel.click(self.cancel_job, [self.repository, self.job], []).then(self.show, where, listing)
        self.document.input(self.prepare_download, [self.repository, self.document], [self.download])
        self.delete.click(self.delete_document, [self.repository, self.document], []).then(self.show, where, listing)

    @shows_errors
    async def on_load(self, request: gr.Request) -> tuple[Any, ...]:
        config = await self.backend.client(request).configuration()
        upload, library = config.allows("upload_rag_docs"), config.allows("show_rag_library")
        notes = []
        if not upload:
            notes.append("Uploading documents is turned off for you by an administrator.")
        if not library:
            notes.append("The document library is turned off for you by an administrator.")
        return gr.update(visible=upload), gr.update(visible=library), " ".join(notes)

    @shows_errors
    async def load_library(
        self, repository: str | None, collection: str | None, request: gr.Request
    ) -> tuple[Any, ...]:
        """At page load: the repositories, the chosen one's collections, then its jobs and library, in one step."""
        repositories = await self.list_repositories(repository, request)
        repository = repositories.get("value")
        collections = await self.list_collections(repository, collection, request)
        return repositories, collections, *await self.show(repository, collections.get("value"), request)

    @shows_errors
    async def list_repositories(self, selected: str | None, request: gr.Request) -> Any:
        repositories = await self.rag(request).repositories()
        ids = [r.id for r in repositories]
        value = selected if selected in ids else (ids[0] if ids else None)
        return gr.update(choices=[(f"{r.name} ({r.id})", r.id) for r in repositories], value=value)

    @shows_errors
    async def list_collections(self, repository: str | None, selected: str | None, request: gr.Request) -> Any:
        if not repository:
            return gr.update(choices=[], value=None)
        collections = await self.rag(request).collections(repository)
        ids = [c.id for c in collections]
        value = selected if selected in ids else ("default" if "default" in ids else (ids[0] if ids else None))
        return gr.update(choices=[(f"{c.name} ({c.id})", c.id) for c in collections], value=value)

    @shows_errors
    async def show(self, repository: str | None, collection: str | None, request: gr.Request) -> tuple[Any, ...]:
        """The jobs (the timer runs while one does) and the library of the chosen collection."""
        if not repository:
            empty = gr.update(choices=[], value=None)
            return job_rows([]), empty, gr.Timer(active=False), doc_rows([]), empty, gr.update(interactive=False)
        rag = self.rag(request)
        jobs = await rag.jobs(repository, collection or None)
        running = [j.id for j in jobs if j.running]
        try:
            docs = await rag.documents(repository, collection or None)
        except BackendError as exc:
            if exc.status != 403:  # the library is turned off for this user: its part is hidden
                raise
            docs = []
        return (
            job_rows(jobs),
            gr.update(choices=running, value=running[0] if running else None),
            gr.Timer(active=bool(running)),
            doc_rows(docs),
            gr.update(choices=[(f"{d.name} · {d.collection_id}", d.id) for d in docs], value=None),
            gr.update(value=None, interactive=False),
        )

    @shows_errors
    async def upload(
        self,
        repository: str | None,
        collection: str | None,
        paths: list[str] | None,
        tags: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        if not repository or not collection:
            raise gr.Error("Choose a repository and a collection first.")
        if not paths:
            raise gr.Error("Choose one or more files first.")
        progress(0.5, desc=f"Sending {len(paths)} file(s) to the backend")
        job = await self.rag(request).upload(repository, collection, paths, tags or "")
        gr.Info(f"Ingesting {job.documents_total} file(s) as job {job.id}.")
        return None, gr.Timer(active=True)

    @shows_errors
    async def cancel_job(self, repository: str | None, job_id: str | None, request: gr.Request) -> None:
        if not repository or not job_id:
            raise gr.Error("No job is running.")
        job = await self.rag(request).cancel_job(repository, job_id)
        gr.Info(f"Job {job.id} is {job.status.replace('_', ' ')}.")

    @shows_errors
    async def prepare_download(self, repository: str | None, document_id: str | None, request: gr.Request) -> Any:
        if not repository or not document_id:
            return gr.update(value=None, interactive=False)
        rag = self.rag(request)
        docs = {d.id: d for d in await rag.documents(repository)}
        doc = docs.get(document_id)
        if doc is None:
            raise gr.Error("That document is gone: refresh the list.")
        content = await rag.download(repository, document_id)
        path = await anyio.to_thread.run_sync(download_path, doc.name, content)
        return gr.update(value=path, interactive=True)

    @shows_errors
    async def delete_document(self, repository: str | None, document_id: str | None, request: gr.Request) -> None:
        if not repository or not document_id:
            raise gr.Error("Choose a document first.")
        await self.rag(request).delete_document(repository, document_id)
        gr.Info("Deleted the document and its chunks.")
