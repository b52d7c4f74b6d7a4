"""Admin > Assistant stacks and MCP servers: list, create, edit and delete, the document edited as JSON. The backend
never returns a secret (MCP header and environment values: only their names), so the editor never shows one; a value
typed in is sent once and not kept by the app."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from frontend.backend import Backend, shows_errors
from frontend.client import BackendError
from frontend.client_admin import JSON, AdminClient
from frontend.tabs.admin_models import table


class ResourcePanel:
    def __init__(self, backend: Backend, title: str, path: str, editable: list[str], key: str) -> None:
        self.backend, self.title, self.path, self.editable, self.key = backend, title, path, editable, key

    def build(self) -> None:
        with gr.Tab(self.title, id=f"admin-{self.key}"):
            self.listing = gr.HTML(elem_id=f"lisa-ar-{self.key}-list")
            with gr.Row():
                self.selected = gr.Dropdown(choices=[], label=self.title, elem_id=f"lisa-ar-{self.key}-selected")
                self.reload = gr.Button("Reload", size="sm")
                self.new = gr.Button("New", size="sm")
            self.document = gr.Code(language="json", label="Document (JSON)", elem_id=f"lisa-ar-{self.key}-doc")
            with gr.Row():
                self.save = gr.Button("Save", variant="primary", elem_id=f"lisa-ar-{self.key}-save")
                self.delete = gr.Button("Delete", variant="stop", elem_id=f"lisa-ar-{self.key}-delete")
            self.result = gr.Markdown(elem_id=f"lisa-ar-{self.key}-result")

    def wire(self, demo: gr.Blocks) -> None:
        listing = ([self.selected], [self.listing, self.selected])
        self.reload.click(self.list, *listing)
        self.selected.input(self.open, [self.selected], [self.document])
        self.new.click(lambda: (None, json.dumps(dict.fromkeys(self.editable, None), indent=2)), None,
                       [self.selected, self.document])  # fmt: skip
        self.save.click(self.store, [self.selected, self.document], [self.result]).then(self.list, *listing)
        self.delete.click(self.remove, [self.selected], [self.result]).then(self.list, *listing)

    def client(self, request: gr.Request) -> AdminClient:
        return AdminClient(self.backend.client(request))

    @shows_errors
    async def list(self, selected: str | None, request: gr.Request) -> tuple[Any, Any]:
        try:
            items = await self.client(request).resources(self.path)
        except BackendError as exc:
            if exc.status == 403:
                return gr.skip(), gr.skip()
            raise
        rows = [[i["id"], i.get("name", ""), i.get("description", "")[:120]] for i in items]
        ids = [i["id"] for i in items]
        return table(["Id", "Name", "Description"], rows), gr.update(
            choices=ids, value=selected if selected in ids else None
        )

    @shows_errors
    async def open(self, resource_id: str | None, request: gr.Request) -> str:
        if not resource_id:
            return ""
        items = await self.client(request).resources(self.path)
        item = next((i for i in items if i["id"] == resource_id), None)
        if item is None:
            raise gr.Error("It is gone: reload the list.")
        return json.dumps({k: item.get(k) for k in self.editable if k in item}, indent=2)

    @shows_errors
    async def store(self, resource_id: str | None, document: str, request: gr.Request) -> str:
        try:
            body = json.loads(document or "{}")
        except json.JSONDecodeError as exc:
            return f"**Not sent:** the document is not JSON ({exc.msg}, line {exc.lineno})."
        if not isinstance(body, dict):
            return "**Not sent:** the document must be a JSON object."
        body = {k: v for k, v in body.items() if v is not None}
        try:
            if resource_id:
                saved: JSON = await self.client(request).update_resource(self.path, resource_id, body)
            else:
                saved = await self.client(request).create_resource(self.path, body)
        except BackendError as exc:
            return f"**The server refused ({exc.status}):** {exc.detail}"
        return f"Saved **{saved.get('name', saved.get('id'))}** ({saved.get('id')})."

    @shows_errors
    async def remove(self, resource_id: str | None, request: gr.Request) -> str:
        if not resource_id:
            return "Choose one first."
        try:
            await self.client(request).delete_resource(self.path, resource_id)
        except BackendError as exc:
            return f"**The server refused ({exc.status}):** {exc.detail}"
        return f"Deleted {resource_id}."


def assistant_panel(backend: Backend) -> ResourcePanel:
    fields = ["name", "description", "model_id", "model_args", "mcp_tools", "allowed_groups"]
    return ResourcePanel(backend, "Assistant stacks", "/api/assistants", fields, "assistants")


def mcp_panel(backend: Backend) -> ResourcePanel:
    fields = ["name", "description", "transport", "scope", "url", "command", "args", "allowed_groups", "enabled"]
    return ResourcePanel(backend, "MCP servers", "/api/mcp/servers", fields, "mcp")
