"""The Gradio app: it only composes the tabs (each a module of ``frontend/tabs`` with ``build`` and ``wire``), the
system banner and who is signed in. Mounted into the backend at /ui (backend/api/ui.py) or run on its own against a
remote backend (frontend/standalone.py)."""

from __future__ import annotations

import re
from html import escape
from typing import Any, Protocol

import gradio as gr

from frontend.backend import Backend, shows_errors
from frontend.page_load import PageLoad
from frontend.schemas import Banner
from frontend.tabs.admin import AdminTab
from frontend.tabs.chat import ChatTab
from frontend.tabs.compare import CompareTab
from frontend.tabs.documents import DocumentsTab
from frontend.tabs.my_tokens import MyTokensTab
from frontend.tabs.prompt_library import PromptLibraryTab
from frontend.tabs.rag_admin import RagAdminTab

# Events of different users run side by side (Gradio runs each event one at a time unless told otherwise); a chat
# turn mostly waits on the backend, so the limit is about open streams, not CPU.
DEFAULT_CONCURRENCY = 64
# Gradio 6 records every event's inputs and outputs in the browser for its "runs" page unless told not to: with the
# whole conversation among a chat turn's outputs that cost hundreds of ms a turn, and it would keep users' chats in
# the browser's storage. Passed where the app is mounted (backend/api/ui.py, frontend/standalone.py).
RUN_HISTORY = False
COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
# The chat's earlier messages, scrolled out of view, are not laid out or painted on each streamed update
# (content-visibility: the browser renders them when they scroll into view); a long conversation stays cheap.
CSS = """
#lisa-banner .lisa-banner{padding:.5rem 1rem;border-radius:.4rem;font-weight:600}
#lisa-user{text-align:right}
#lisa-chatbot .message-wrap>.message-row{content-visibility:auto;contain-intrinsic-size:auto 60px}
"""


class Tab(Protocol):
    def build(self) -> None: ...
    def wire(self, demo: gr.Blocks, page: PageLoad) -> None: ...


def banner_html(banner: Banner) -> str:
    if not banner.enabled or not banner.text.strip():
        return ""
    style = []
    if banner.background_color and COLOR.match(banner.background_color):
        style.append(f"background:{banner.background_color}")
    if banner.text_color and COLOR.match(banner.text_color):
        style.append(f"color:{banner.text_color}")
    return f'<div class="lisa-banner" role="status" style="{";".join(style)}">{escape(banner.text)}</div>'


def build_app(backend: Backend, concurrency: int | None = DEFAULT_CONCURRENCY) -> gr.Blocks:
    tabs: list[Tab] = [
        ChatTab(backend),
        PromptLibraryTab(backend),
        CompareTab(backend),
        DocumentsTab(backend),
        MyTokensTab(backend),
        RagAdminTab(backend),
        AdminTab(backend),
    ]

    @shows_errors
    async def load_shell(request: gr.Request) -> tuple[Any, Any]:
        client = backend.client(request)
        me, config = await client.me(), await client.configuration()
        html = banner_html(config.banner)
        who = f"Signed in as **{escape(me.display_name or me.username)}** · [Sign out](/logout)"
        return gr.update(value=html, visible=bool(html)), who

    with gr.Blocks(title="LISA", analytics_enabled=False) as demo:
        with gr.Row():
            banner = gr.HTML(visible=False, elem_id="lisa-banner")
        who = gr.Markdown(elem_id="lisa-user")
        with gr.Tabs():
            for tab in tabs:
                tab.build()
        page = PageLoad()
        page.add(load_shell, [], [banner, who])
        for tab in tabs:
            tab.wire(demo, page)
        page.attach(demo, progress_on=who)  # one event reads all the page needs (frontend/page_load.py)
    demo.queue(default_concurrency_limit=concurrency)
    return demo
