"""The Prompt Library tab: one's personas and directives (and those shared with one), searched, created, edited and
deleted through ``/api/prompt-templates``. Hidden when ``show_prompt_template_library`` keeps it from the user; the
editor is hidden when ``edit_prompt_template`` does (the backend refuses either way)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from frontend.backend import Backend, shows_errors
from frontend.client import BackendError
from frontend.page_load import PageLoad
from frontend.schemas import PromptTemplate

KINDS = ["persona", "directive"]
SHARING = [("Only me", "private"), ("My groups (as set through the API)", "groups"), ("Everyone", "public")]


def choices(templates: list[PromptTemplate]) -> list[tuple[str, str]]:
    return [(f"{t.title} ({t.kind})", t.id) for t in templates]


class PromptLibraryTab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def build(self) -> None:
        with gr.Tab("Prompt Library", id="prompts", elem_id="lisa-prompts-tab") as self.tab:
            self.closed = gr.Markdown(
                "The prompt library is turned off for you by an administrator.", visible=False, elem_id="lisa-pt-off"
            )
            self.build_library()

    def build_library(self) -> None:
        with gr.Row(elem_id="lisa-pt-library") as self.library:
            with gr.Column(scale=1, min_width=260):
                self.kind_filter = gr.Radio(
                    [("All", ""), ("Personas", "persona"), ("Directives", "directive")], value="", label="Show"
                )
                self.search = gr.Textbox(placeholder="Search templates", show_label=False, elem_id="lisa-pt-search")
                self.templates = gr.Radio(choices=[], label="Templates", elem_id="lisa-pt-list")
            with gr.Column(scale=3) as self.editor:
                self.title = gr.Textbox(label="Title", elem_id="lisa-pt-title")
                with gr.Row():
                    self.kind = gr.Dropdown(KINDS, value="persona", label="Kind", elem_id="lisa-pt-kind")
                    self.sharing = gr.Dropdown(SHARING, value="private", label="Shared with", elem_id="lisa-pt-sharing")
                self.body = gr.Textbox(
                    label="Text ({{name}} marks a variable filled in at use)", lines=8, elem_id="lisa-pt-body"
                )
                self.info = gr.Markdown(elem_id="lisa-pt-info")
                with gr.Row():
                    self.save = gr.Button("Save", variant="primary", elem_id="lisa-pt-save")
                    self.new = gr.Button("New", elem_id="lisa-pt-new")
                    self.delete = gr.Button("Delete", variant="stop", elem_id="lisa-pt-delete")
        self.template_id = gr.State(None)

    def wire(self, demo: gr.Blocks, page: PageLoad) -> None:
        listing = [self.kind_filter, self.search, self.template_id]
        page.add(self.on_load, [], [self.library, self.closed, self.editor])
        page.add(self.list_templates, listing, [self.templates])
        self.kind_filter.change(self.list_templates, listing, [self.templates])
        self.search.submit(self.list_templates, listing, [self.templates])
        form = [self.template_id, self.title, self.kind, self.sharing, self.body, self.info]
        self.templates.input(self.open_template, [self.templates], form)
        self.new.click(self.blank, outputs=form)
        self.save.click(
            self.save_template, [self.template_id, self.title, self.kind, self.sharing, self.body], form
        ).then(self.list_templates, listing, [self.templates])
        self.delete.click(self.delete_template, [self.template_id], form).then(
            self.list_templates, listing, [self.templates]
        )

    @shows_errors
    async def on_load(self, request: gr.Request) -> tuple[Any, ...]:
        config = await self.backend.client(request).configuration()
        allowed = config.allows("show_prompt_template_library")
        # The tab's button stays: hiding it ("hidden"; False leaves it in Gradio 6.31) worked in a small app, but
        # here the whole update was then lost. So the tab's content is hidden and a notice shown instead.
        return (
            gr.update(visible=allowed),
            gr.update(visible=not allowed),
            gr.update(visible=config.allows("edit_prompt_template")),
        )

    @shows_errors
    async def list_templates(self, kind: str, query: str, selected: str | None, request: gr.Request) -> Any:
        try:
            page = await self.backend.client(request).templates(kind=kind or None, q=(query or "").strip() or None)
        except BackendError as exc:
            if exc.status == 403:
                return gr.update(choices=[], value=None)
            raise
        return gr.update(choices=choices(page.data), value=selected)

    @staticmethod
    def form(template: PromptTemplate | None) -> tuple[Any, ...]:
        if template is None:
            return None, "", "persona", "private", "", ""
        variables = ", ".join(f"`{{{{{v}}}}}`" for v in template.variables) or "none"
        info = f"Revision {template.revision} · owner `{template.owner}` · variables: {variables}"
        return template.id, template.title, template.kind, template.sharing, template.body, info

    @shows_errors
    async def open_template(self, template_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        if not template_id:
            return self.form(None)
        return self.form(await self.backend.client(request).template(template_id))

    async def blank(self) -> tuple[Any, ...]:
        return self.form(None)

    @shows_errors
    async def save_template(
        self, template_id: str | None, title: str, kind: str, sharing: str, body: str, request: gr.Request
    ) -> tuple[Any, ...]:
        client = self.backend.client(request)
        if template_id:
            fields = {"title": title.strip(), "kind": kind, "sharing": sharing, "body": body}
            saved = await client.update_template(template_id, **fields)
        else:
            saved = await client.create_template(title.strip(), body, kind, sharing)
        gr.Info(f"Saved “{saved.title}”.")
        return self.form(saved)

    @shows_errors
    async def delete_template(self, template_id: str | None, request: gr.Request) -> tuple[Any, ...]:
        if not template_id:
            raise gr.Error("Open a template first.")
        await self.backend.client(request).delete_template(template_id)
        gr.Info("Deleted.")
        return self.form(None)
