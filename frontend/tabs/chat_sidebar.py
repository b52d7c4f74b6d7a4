"""The chat's sessions sidebar: new chat, search, projects (folders), open, rename, delete, export (JSON, Markdown),
import a JSON export, and a read-only share link (create, revoke)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gradio as gr

from frontend import client_chat as api
from frontend.backend import Backend, shows_errors
from frontend.chat_view import session_choices
from frontend.client import BackendClient
from frontend.page_load import PageLoad

if TYPE_CHECKING:
    from frontend.tabs.chat import ChatTab

ALL = ("All chats", "")
NO_PROJECT = ("(no project)", "")


def export_file(session_id: str, data: bytes, suffix: str) -> str:
    path = Path(tempfile.mkdtemp(prefix="lisa-export-")) / f"{session_id}.{suffix}"
    path.write_bytes(data)
    return str(path)


class SidebarPart:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def build(self) -> None:
        self.new = gr.Button("New chat", elem_id="lisa-new-chat")
        self.project = gr.Dropdown(label="Project", choices=[ALL], value="", elem_id="lisa-project")
        self.search = gr.Textbox(placeholder="Search chats", show_label=False, elem_id="lisa-search")
        self.sessions = gr.Radio(choices=[], label="Chats", elem_id="lisa-sessions")
        with gr.Accordion("This chat", open=False):
            self.title = gr.Textbox(label="Title", elem_id="lisa-title")
            with gr.Row():
                self.rename = gr.Button("Rename", size="sm", elem_id="lisa-rename")
                self.delete = gr.Button("Delete", size="sm", variant="stop", elem_id="lisa-delete")
            self.move_to = gr.Dropdown(label="Move to project", choices=[NO_PROJECT], value="", elem_id="lisa-move")
            with gr.Row():
                self.export = gr.Button("Export JSON", size="sm", elem_id="lisa-export")
                self.export_md = gr.Button("Export Markdown", size="sm", elem_id="lisa-export-md")
            self.export_file = gr.File(label="Export", visible=False, interactive=False, elem_id="lisa-export-file")
            with gr.Row():
                self.share = gr.Button("Share link", size="sm", elem_id="lisa-share")
                self.unshare = gr.Button("Revoke link", size="sm", elem_id="lisa-unshare")
            self.share_link = gr.Markdown(elem_id="lisa-share-link")
        with gr.Accordion("Projects and import", open=False, elem_id="lisa-projects"):
            self.project_name = gr.Textbox(label="New project", elem_id="lisa-project-name")
            with gr.Row():
                self.add_project = gr.Button("Create", size="sm", elem_id="lisa-project-create")
                self.remove_project = gr.Button(
                    "Delete the chosen project (its chats stay)", size="sm", elem_id="lisa-project-delete"
                )
            self.importer = gr.UploadButton(
                "Import a JSON export", file_types=[".json"], size="sm", elem_id="lisa-import"
            )

    def wire(self, demo: gr.Blocks, page: PageLoad, tab: ChatTab) -> None:
        # The events that change the conversation shown carry their loading status on the chatbot alone
        # ("One progress target" in frontend/page_load.py).
        listing = [self.project, self.search, tab.session_id]
        projects = [self.project, self.move_to]
        page.add(self.list_projects, [self.project], projects)
        self.project.change(self.list_sessions, listing, [self.sessions])
        self.search.submit(self.list_sessions, listing, [self.sessions])
        self.sessions.input(
            tab.open_session, [self.sessions, tab.show_meta, tab.model], tab.opened, show_progress_on=tab.chatbot
        ).then(tab.part_refresh, [tab.session_id, tab.model], tab.part_outputs)
        self.new.click(tab.new_chat, outputs=tab.opened, show_progress_on=tab.chatbot).then(
            tab.part_refresh, [tab.session_id, tab.model], tab.part_outputs
        )
        self.rename.click(self.rename_session, [tab.session_id, self.title], []).then(
            self.list_sessions, listing, [self.sessions]
        )
        self.delete.click(self.delete_session, [tab.session_id], []).then(
            tab.new_chat, outputs=tab.opened, show_progress_on=tab.chatbot
        ).then(self.list_sessions, listing, [self.sessions])
        self.move_to.input(self.move, [tab.session_id, self.move_to], []).then(
            self.list_sessions, listing, [self.sessions]
        )
        self.export.click(self.export_json, [tab.session_id], [self.export_file])
        self.export_md.click(self.export_markdown, [tab.session_id], [self.export_file])
        self.share.click(self.share_session, [tab.session_id], [self.share_link])
        self.unshare.click(self.unshare_session, [tab.session_id], [self.share_link])
        self.add_project.click(self.create_project, [self.project_name], [self.project_name, *projects])
        self.remove_project.click(self.delete_project, [self.project], projects).then(
            self.list_sessions, listing, [self.sessions]
        )
        self.importer.upload(self.import_export, [self.importer, self.project], [tab.session_id]).then(
            self.list_sessions, listing, [self.sessions]
        ).then(tab.reopen, [tab.session_id, tab.show_meta, tab.model], tab.opened, show_progress_on=tab.chatbot)

    # --- handlers -------------------------------------------------------------------------------------------------
    @shows_errors
    async def list_sessions(
        self, project: str | None, query: str | None, session_id: str | None, request: gr.Request
    ) -> Any:
        return await self.listing(self.backend.client(request), project, query, session_id)

    @staticmethod
    async def listing(client: BackendClient, project: str | None, query: str | None, session_id: str | None) -> Any:
        found = await api.sessions_in(client, project or None, (query or "").strip() or None)
        return gr.update(choices=session_choices(found), value=session_id)

    @shows_errors
    async def list_projects(self, chosen: str | None, request: gr.Request) -> tuple[Any, ...]:
        found = await api.projects(self.backend.client(request))
        names = [(p.name, p.id) for p in found]
        value = chosen if chosen in {p.id for p in found} else ""
        return gr.update(choices=[ALL, *names], value=value), gr.update(choices=[NO_PROJECT, *names], value="")

    @shows_errors
    async def create_project(self, name: str, request: gr.Request) -> tuple[Any, ...]:
        if not (name or "").strip():
            raise gr.Error("Name the project first.")
        created = await api.create_project(self.backend.client(request), name.strip())
        gr.Info(f"Project “{created.name}” created.")
        return ("", *await self.list_projects(created.id, request))

    @shows_errors
    async def delete_project(self, project: str | None, request: gr.Request) -> tuple[Any, ...]:
        if not project:
            raise gr.Error("Choose a project in the Project list first.")
        await api.delete_project(self.backend.client(request), project)
        gr.Info("Project deleted; its chats are kept.")
        return await self.list_projects("", request)

    @shows_errors
    async def move(self, session_id: str | None, project: str | None, request: gr.Request) -> None:
        if not session_id:
            raise gr.Error("Open a chat first.")
        await api.move_to_project(self.backend.client(request), session_id, project or None)
        gr.Info("Moved." if project else "Taken out of its project.")

    @shows_errors
    async def rename_session(self, session_id: str | None, title: str, request: gr.Request) -> None:
        if not session_id:
            raise gr.Error("Open a chat first.")
        await self.backend.client(request).rename_session(session_id, title.strip())
        gr.Info("Renamed.")

    @shows_errors
    async def delete_session(self, session_id: str | None, request: gr.Request) -> None:
        if not session_id:
            raise gr.Error("Open a chat first.")
        await self.backend.client(request).delete_session(session_id)

    async def export_as(self, session_id: str | None, kind: Literal["json", "markdown"], request: gr.Request) -> Any:
        if not session_id:
            raise gr.Error("Open a chat first.")
        data = await self.backend.client(request).export_session(session_id, kind)
        return gr.update(value=export_file(session_id, data, "md" if kind == "markdown" else "json"), visible=True)

    @shows_errors
    async def export_json(self, session_id: str | None, request: gr.Request) -> Any:
        return await self.export_as(session_id, "json", request)

    @shows_errors
    async def export_markdown(self, session_id: str | None, request: gr.Request) -> Any:
        return await self.export_as(session_id, "markdown", request)

    @shows_errors
    async def share_session(self, session_id: str | None, request: gr.Request) -> str:
        if not session_id:
            raise gr.Error("Open a chat first.")
        link = await api.share(self.backend.client(request), session_id)
        return (
            f"Read-only link (shown once; a new one replaces it): [{link.path}]({link.path})\n\n"
            "Whoever opens it must be signed in and may see the chat's models and repositories."
        )

    @shows_errors
    async def unshare_session(self, session_id: str | None, request: gr.Request) -> str:
        if not session_id:
            raise gr.Error("Open a chat first.")
        await api.revoke_share(self.backend.client(request), session_id)
        return "The link is revoked."

    @shows_errors
    async def import_export(self, path: str | None, project: str | None, request: gr.Request) -> str | None:
        if not path:
            return None
        data = await asyncio.to_thread(Path(path).read_bytes)
        session = await api.import_session(self.backend.client(request), data, project or None)
        gr.Info(f"Imported “{session.title}”.")
        return session.id
