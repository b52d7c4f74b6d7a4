"""The RAG admin tab (admins and RAG admins): repositories, their collections (chunking, embedding model) and
ingestion pipelines (a server folder or S3 prefix, on change or on a schedule; run now, delete). Forms are checked
before they are sent (frontend/rag_admin_forms.py); the backend's own refusals appear as its messages. Everyone
else sees a notice instead of the tab's content (the backend answers them 403 in any case)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from frontend.backend import Backend, shows_errors
from frontend.client_rag import RagClient
from frontend.page_load import PageLoad
from frontend.rag_admin_forms import STRATEGIES, FormError, collection_body, pipeline_body, repository_body
from frontend.schemas_rag import Collection, Pipeline, Repository

PIPELINE_COLUMNS = ["Id", "Name", "Collection", "Source", "Trigger", "Enabled", "Last run (UTC)", "Last error"]
NEW = ""  # the dropdowns' "new ..." entry


def checked(build: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        body: dict[str, Any] = build(*args, **kwargs)
    except FormError as exc:
        raise gr.Error("; ".join(exc.problems), title="Check the form") from exc
    return body


def source_text(source: dict[str, Any]) -> str:
    if source.get("type") == "s3":
        return f"s3://{source.get('bucket', '')}/{source.get('prefix', '')}"
    return f"folder {source.get('path', '')}"


def trigger_text(trigger: dict[str, Any]) -> str:
    return f"schedule {trigger.get('cron', '')}" if trigger.get("type") == "schedule" else "on change"


def pipeline_rows(pipelines: list[Pipeline]) -> pd.DataFrame:
    rows = [
        [p.id, p.name, p.collection_id, source_text(p.source), trigger_text(p.trigger), "yes" if p.enabled else "no",
         p.last_run_at.strftime("%Y-%m-%d %H:%M:%S") if p.last_run_at else "never", p.last_error or ""]
        for p in pipelines
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=PIPELINE_COLUMNS)


class RagAdminTab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def rag(self, request: gr.Request) -> RagClient:
        return RagClient(self.backend.client(request))

    def build(self) -> None:
        with gr.Tab("RAG admin", id="rag-admin", elem_id="lisa-ra-tab"):
            self.closed = gr.Markdown(
                "This part is for administrators and RAG administrators.", visible=False, elem_id="lisa-ra-off"
            )
            with gr.Column(visible=False, elem_id="lisa-ra-body") as self.body:
                self.build_repositories()
                self.build_collections()
                self.build_pipelines()

    def build_repositories(self) -> None:
        gr.Markdown("### Repositories")
        self.repo = gr.Dropdown(choices=[], label="Repository", elem_id="lisa-ra-repo")
        with gr.Row():
            self.repo_id = gr.Textbox(label="Id (new only)", elem_id="lisa-ra-repo-id")
            self.repo_name = gr.Textbox(label="Name", elem_id="lisa-ra-repo-name")
            self.repo_model = gr.Textbox(
                label="Embedding model", placeholder="the platform's default", elem_id="lisa-ra-repo-model"
            )
            self.repo_groups = gr.Textbox(
                label="Allowed groups (comma-separated; empty: everyone)", elem_id="lisa-ra-repo-groups"
            )
        with gr.Row():
            self.repo_create = gr.Button("Create repository", variant="primary", elem_id="lisa-ra-repo-create")
            self.repo_save = gr.Button("Save changes", elem_id="lisa-ra-repo-save")
            self.repo_delete = gr.Button("Delete repository", variant="stop", elem_id="lisa-ra-repo-delete")

    def build_collections(self) -> None:
        gr.Markdown("### Collections of the repository")
        self.coll = gr.Dropdown(choices=[], label="Collection", elem_id="lisa-ra-coll")
        with gr.Row():
            self.coll_id = gr.Textbox(label="Id (new only)", elem_id="lisa-ra-coll-id")
            self.coll_name = gr.Textbox(label="Name", elem_id="lisa-ra-coll-name")
            self.coll_model = gr.Textbox(
                label="Embedding model (new only)", placeholder="the repository's", elem_id="lisa-ra-coll-model"
            )
            self.coll_groups = gr.Textbox(label="Allowed groups (comma-separated)", elem_id="lisa-ra-coll-groups")
        self.coll_description = gr.Textbox(label="Description", elem_id="lisa-ra-coll-description")
        with gr.Row():
            self.coll_strategy = gr.Dropdown(
                STRATEGIES, value="tokens", label="Chunking", elem_id="lisa-ra-coll-chunking"
            )
            self.coll_size = gr.Number(label="Chunk size", precision=0, elem_id="lisa-ra-coll-size")
            self.coll_overlap = gr.Number(label="Overlap", precision=0, elem_id="lisa-ra-coll-overlap")
            self.coll_override = gr.Checkbox(label="Uploads may choose their chunking", elem_id="lisa-ra-coll-override")
        self.coll_info = gr.Markdown(elem_id="lisa-ra-coll-info")
        with gr.Row():
            self.coll_create = gr.Button("Create collection", variant="primary", elem_id="lisa-ra-coll-create")
            self.coll_save = gr.Button("Save changes", elem_id="lisa-ra-coll-save")
            self.coll_delete = gr.Button("Delete collection", variant="stop", elem_id="lisa-ra-coll-delete")

    def build_pipelines(self) -> None:
        gr.Markdown("### Ingestion pipelines of the repository")
        self.pipelines = gr.Dataframe(
            pd.DataFrame(columns=PIPELINE_COLUMNS), interactive=False, wrap=True, elem_id="lisa-ra-pipelines"
        )
        with gr.Row():
            self.pipeline = gr.Dropdown(choices=[], label="Pipeline", elem_id="lisa-ra-pipeline")
            self.pipe_run = gr.Button("Run now", scale=0, elem_id="lisa-ra-pipe-run")
            self.pipe_delete = gr.Button("Delete pipeline", variant="stop", scale=0, elem_id="lisa-ra-pipe-delete")
        with gr.Accordion("New pipeline", open=False, elem_id="lisa-ra-pipe-form"):
            with gr.Row():
                self.pipe_name = gr.Textbox(label="Name", elem_id="lisa-ra-pipe-name")
                self.pipe_collection = gr.Textbox(value="default", label="Collection", elem_id="lisa-ra-pipe-coll")
                self.pipe_tags = gr.Textbox(label="Tags (comma-separated)", elem_id="lisa-ra-pipe-tags")
            with gr.Row():
                self.pipe_source = gr.Radio(
                    [("Server folder", "folder"), ("S3", "s3")], value="folder", label="Source",
                    elem_id="lisa-ra-pipe-source",
                )  # fmt: skip
                self.pipe_path = gr.Textbox(label="Folder (server path)", elem_id="lisa-ra-pipe-path")
                self.pipe_bucket = gr.Textbox(label="S3 bucket", elem_id="lisa-ra-pipe-bucket")
                self.pipe_prefix = gr.Textbox(label="S3 prefix", elem_id="lisa-ra-pipe-prefix")
            with gr.Row():
                self.pipe_trigger = gr.Radio(
                    [("On change", "event"), ("On a schedule", "schedule")], value="event", label="Trigger",
                    elem_id="lisa-ra-pipe-trigger",
                )  # fmt: skip
                self.pipe_cron = gr.Textbox(label="Cron (UTC, five fields)", placeholder="*/15 * * * *",
                                            elem_id="lisa-ra-pipe-cron")  # fmt: skip
                self.pipe_auto_remove = gr.Checkbox(True, label="Remove documents gone from the source")
                self.pipe_enabled = gr.Checkbox(True, label="Enabled")
            self.pipe_create = gr.Button("Create pipeline", variant="primary", elem_id="lisa-ra-pipe-create")

    def wire(self, demo: gr.Blocks, page: PageLoad) -> None:
        repo_form = [self.repo_id, self.repo_name, self.repo_model, self.repo_groups]
        coll_form = [self.coll_id, self.coll_name, self.coll_model, self.coll_groups, self.coll_description,
                     self.coll_strategy, self.coll_size, self.coll_overlap, self.coll_override, self.coll_info]  # fmt: skip
        pipes = [self.pipelines, self.pipeline]
        # At load the form is left alone (it starts empty, as for a new repository): one types into it at once.
        page.add(self.on_load, [], [self.body, self.closed])
        page.add(self.list_repositories, [self.repo], [self.repo])
        self.repo.input(self.open_repository, [self.repo], [*repo_form, self.coll, *pipes])
        self.repo_create.click(self.create_repository, repo_form, [self.repo]).then(
            self.open_repository, [self.repo], [*repo_form, self.coll, *pipes]
        )
        self.repo_save.click(self.save_repository, [self.repo, *repo_form], [self.repo])
        self.repo_delete.click(self.delete_repository, [self.repo], [self.repo]).then(
            self.open_repository, [self.repo], [*repo_form, self.coll, *pipes]
        )
        self.coll.input(self.open_collection, [self.repo, self.coll], coll_form)
        form_in = coll_form[:-1]
        self.coll_create.click(self.create_collection, [self.repo, *form_in], [self.coll]).then(
            self.open_collection, [self.repo, self.coll], coll_form
        )
        self.coll_save.click(self.save_collection, [self.repo, self.coll, *form_in], coll_form)
        self.coll_delete.click(self.delete_collection, [self.repo, self.coll], [self.coll]).then(
            self.open_collection, [self.repo, self.coll], coll_form
        )
        pipe_form = [self.pipe_name, self.pipe_collection, self.pipe_source, self.pipe_path, self.pipe_bucket,
                     self.pipe_prefix, self.pipe_trigger, self.pipe_cron, self.pipe_tags, self.pipe_auto_remove,
                     self.pipe_enabled]  # fmt: skip
        self.pipe_create.click(self.create_pipeline, [self.repo, *pipe_form], pipes)
        self.pipe_run.click(self.run_pipeline, [self.repo, self.pipeline], pipes)
        self.pipe_delete.click(self.delete_pipeline, [self.repo, self.pipeline], pipes)

    @shows_errors
    async def on_load(self, request: gr.Request) -> tuple[Any, Any]:
        me = await self.backend.client(request).me()
        allowed = me.is_admin or me.is_rag_admin
        return gr.update(visible=allowed), gr.update(visible=not allowed)

    async def allowed(self, request: gr.Request) -> bool:
        me = await self.backend.client(request).me()
        return me.is_admin or me.is_rag_admin

    # --- repositories -----------------------------------------------------------------------------------------
    @shows_errors
    async def list_repositories(self, selected: str | None, request: gr.Request) -> Any:
        if not await self.allowed(request):
            return gr.update(choices=[], value=None)
        repositories = await self.rag(request).repositories()
        ids = [r.id for r in repositories]
        value = selected if selected in ids else NEW
        return gr.update(choices=[("— new repository —", NEW), *((f"{r.name} ({r.id})", r.id) for r in repositories)],
                         value=value)  # fmt: skip

    @staticmethod
    def repo_fields(repo: Repository | None) -> list[Any]:
        if repo is None:
            return ["", "", "", ""]
        return [repo.id, repo.name, repo.embedding_model, ", ".join(repo.allowed_groups)]

    @shows_errors
    async def open_repository(self, repo_id: str | None, request: gr.Request) -> list[Any]:
        if not repo_id or not await self.allowed(request):
            empty = gr.update(choices=[("— new collection —", NEW)], value=NEW)
            return [*self.repo_fields(None), empty, pipeline_rows([]), gr.update(choices=[], value=None)]
        rag = self.rag(request)
        repo = next((r for r in await rag.repositories() if r.id == repo_id), None)
        collections = await rag.collections(repo_id)
        pipelines = await rag.pipelines(repo_id)
        return [
            *self.repo_fields(repo),
            self.collection_choices(collections, None),
            pipeline_rows(pipelines),
            gr.update(choices=[(f"{p.name} ({p.id})", p.id) for p in pipelines], value=None),
        ]

    @shows_errors
    async def create_repository(self, repo_id: str, name: str, model: str, groups: str, request: gr.Request) -> Any:
        body = checked(repository_body, repo_id, name, model, groups, new=True)
        created = await self.rag(request).create_repository(body)
        gr.Info(f"Created repository {created.id} (with its 'default' collection).")
        return await self.list_repositories(created.id, request)

    @shows_errors
    async def save_repository(
        self, selected: str | None, _id: str, name: str, model: str, groups: str, request: gr.Request
    ) -> Any:
        if not selected:
            raise gr.Error("Choose a repository to change, or use Create for a new one.")
        body = checked(repository_body, "", name, model, groups, new=False)
        saved = await self.rag(request).update_repository(selected, body)
        gr.Info(f"Saved repository {saved.id}.")
        return await self.list_repositories(saved.id, request)

    @shows_errors
    async def delete_repository(self, selected: str | None, request: gr.Request) -> Any:
        if not selected:
            raise gr.Error("Choose a repository first.")
        await self.rag(request).delete_repository(selected)
        gr.Info(f"Deleted repository {selected} with its collections and documents.")
        return await self.list_repositories(None, request)

    # --- collections ------------------------------------------------------------------------------------------
    @staticmethod
    def collection_choices(collections: list[Collection], selected: str | None) -> Any:
        ids = [c.id for c in collections]
        return gr.update(
            choices=[("— new collection —", NEW), *((f"{c.name} ({c.id})", c.id) for c in collections)],
            value=selected if selected in ids else NEW,
        )

    @staticmethod
    def coll_fields(coll: Collection | None) -> list[Any]:
        if coll is None:
            return ["", "", "", "", "", "tokens", None, None, False, ""]
        info = f"{coll.embedding_model}, {coll.dimensions} dimensions · chunking {coll.chunking.describe()}"
        return [coll.id, coll.name, coll.embedding_model, ", ".join(coll.allowed_groups), coll.description,
                coll.chunking.strategy, coll.chunking.size, coll.chunking.overlap, coll.allow_chunking_override,
                info]  # fmt: skip

    @shows_errors
    async def open_collection(self, repo_id: str | None, coll_id: str | None, request: gr.Request) -> list[Any]:
        if not repo_id or not coll_id:
            return self.coll_fields(None)
        found = [c for c in await self.rag(request).collections(repo_id) if c.id == coll_id]
        return self.coll_fields(found[0] if found else None)

    @shows_errors
    async def create_collection(
        self, repo_id: str | None, cid: str, name: str, model: str, groups: str, description: str, strategy: str,
        size: float | None, overlap: float | None, override: bool, request: gr.Request,
    ) -> Any:  # fmt: skip
        if not repo_id:
            raise gr.Error("Choose (or create) a repository first.")
        body = checked(collection_body, cid, name, description, model, strategy, size, overlap, override, groups,
                       new=True)  # fmt: skip
        rag = self.rag(request)
        created = await rag.create_collection(repo_id, body)
        gr.Info(f"Created collection {created.id}.")
        return self.collection_choices(await rag.collections(repo_id), created.id)

    @shows_errors
    async def save_collection(
        self, repo_id: str | None, coll_id: str | None, _cid: str, name: str, _model: str, groups: str,
        description: str, strategy: str, size: float | None, overlap: float | None, override: bool,
        request: gr.Request,
    ) -> list[Any]:  # fmt: skip
        if not repo_id or not coll_id:
            raise gr.Error("Choose a collection to change, or use Create for a new one.")
        body = checked(collection_body, "", name, description, "", strategy, size, overlap, override, groups,
                       new=False)  # fmt: skip
        saved = await self.rag(request).update_collection(repo_id, coll_id, body)
        gr.Info(f"Saved collection {saved.id}.")
        return self.coll_fields(saved)

    @shows_errors
    async def delete_collection(self, repo_id: str | None, coll_id: str | None, request: gr.Request) -> Any:
        if not repo_id or not coll_id:
            raise gr.Error("Choose a collection first.")
        rag = self.rag(request)
        await rag.delete_collection(repo_id, coll_id)
        gr.Info(f"Deleted collection {coll_id} and its documents.")
        return self.collection_choices(await rag.collections(repo_id), None)

    # --- pipelines --------------------------------------------------------------------------------------------
    async def pipeline_outputs(self, repo_id: str, request: gr.Request) -> tuple[Any, Any]:
        pipelines = await self.rag(request).pipelines(repo_id)
        return pipeline_rows(pipelines), gr.update(choices=[(f"{p.name} ({p.id})", p.id) for p in pipelines])

    @shows_errors
    async def create_pipeline(
        self, repo_id: str | None, name: str, collection: str, source: str, path: str, bucket: str, prefix: str,
        trigger: str, cron: str, tags: str, auto_remove: bool, enabled: bool, request: gr.Request,
    ) -> tuple[Any, Any]:  # fmt: skip
        if not repo_id:
            raise gr.Error("Choose a repository first.")
        fields = (name, collection, source, path, bucket, prefix, trigger, cron, tags, auto_remove, enabled)
        body = checked(pipeline_body, *fields)
        created = await self.rag(request).create_pipeline(repo_id, body)
        gr.Info(f"Created pipeline {created.name} ({created.id}).")
        return await self.pipeline_outputs(repo_id, request)

    @shows_errors
    async def run_pipeline(self, repo_id: str | None, pipeline_id: str | None, request: gr.Request) -> tuple[Any, Any]:
        if not repo_id or not pipeline_id:
            raise gr.Error("Choose a pipeline first.")
        job = await self.rag(request).run_pipeline(repo_id, pipeline_id)
        gr.Info(f"Started job {job.id} (follow it in the Documents tab)." if job else "Nothing changed at the source.")
        return await self.pipeline_outputs(repo_id, request)

    @shows_errors
    async def delete_pipeline(
        self, repo_id: str | None, pipeline_id: str | None, request: gr.Request
    ) -> tuple[Any, Any]:
        if not repo_id or not pipeline_id:
            raise gr.Error("Choose a pipeline first.")
        await self.rag(request).delete_pipeline(repo_id, pipeline_id)
        gr.Info("Deleted the pipeline.")
        return await self.pipeline_outputs(repo_id, request)
