"""The Admin tab: models, configuration, usage, tokens, limits, the audit log, assistant stacks and MCP servers.

Shown to admins only: when the page loads, the tab is hidden unless ``/api/users/me`` says the user is an admin. Hiding is a convenience, never the protection: every panel calls the backend as the signed-in
user, and the backend answers 403 to a non-admin (the panels then show nothing)."""

from __future__ import annotations

from typing import Any, Protocol

import gradio as gr

from frontend.backend import Backend, shows_errors
from frontend.page_load import PageLoad
from frontend.tabs.admin_access import AccessPanel
from frontend.tabs.admin_config import ConfigPanel
from frontend.tabs.admin_models import ModelsPanel
from frontend.tabs.admin_resources import ResourcePanel, assistant_panel, mcp_panel
from frontend.tabs.admin_usage import UsagePanel

# Gradio 6.31 cannot hide this tab's button from a load event here: visible=False leaves it, an update to "hidden"
# was lost, and a tab built "hidden" and shown later could not be selected. So a style rule hides it in the browser.
HIDE_TAB = """(admin) => {
  if (!admin && !document.getElementById('lisa-admin-hide')) {
    const style = document.createElement('style');
    style.id = 'lisa-admin-hide';
    style.textContent = 'button[data-tab-id="admin"], #lisa-admin-tab { display: none !important; }';
    document.head.appendChild(style);
  }
  return [];
}"""


class Panel(Protocol):
    def build(self) -> None: ...
    def wire(self, demo: gr.Blocks) -> None: ...


class AdminTab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.models = ModelsPanel(backend)
        self.config = ConfigPanel(backend)
        self.usage = UsagePanel(backend)
        self.access = AccessPanel(backend)
        self.assistants, self.mcp = assistant_panel(backend), mcp_panel(backend)
        self.panels: list[Panel] = [self.models, self.config, self.usage, self.access, self.assistants, self.mcp]

    def build(self) -> None:
        with gr.Tab("Admin", id="admin", elem_id="lisa-admin-tab") as self.tab:
            self.closed = gr.Markdown("Administrators only.", elem_id="lisa-admin-off")
            with gr.Tabs(visible=False, elem_id="lisa-admin") as self.content:
                for panel in self.panels:
                    panel.build()

    def wire(self, demo: gr.Blocks, page: PageLoad) -> None:
        for panel in self.panels:
            panel.wire(demo)
        flag = gr.Checkbox(False, visible=False)  # a gr.State never reaches the browser's JS
        page.add(self.on_load, [], [flag])
        page.then(lambda loaded: loaded.then(None, [flag], js=HIDE_TAB))
        page.add(self.on_load_content, [], [self.closed, self.content, self.models.timer])
        page.add(self.config.load, [], self.config.outputs())
        page.add(self.load_lists, [], self.access.load_outputs())
        for resources in (self.assistants, self.mcp):
            page.add(self.loader(resources), [resources.selected], [resources.listing, resources.selected])
        page.add(self.load_usage, [self.usage.group_by, self.usage.range], self.usage.outputs())

    async def is_admin(self, request: gr.Request) -> bool:
        return (await self.backend.client(request).me()).is_admin

    @shows_errors
    async def on_load(self, request: gr.Request) -> bool:
        return await self.is_admin(request)

    @shows_errors
    async def on_load_content(self, request: gr.Request) -> tuple[Any, ...]:
        if not await self.is_admin(request):
            return gr.skip(), gr.skip(), gr.skip()
        return gr.update(visible=False), gr.update(visible=True), self.models.start()

    @shows_errors
    async def load_lists(self, request: gr.Request) -> tuple[Any, ...]:
        if not await self.is_admin(request):
            return tuple(gr.skip() for _ in self.access.load_outputs())
        return await self.access.load(request)

    @shows_errors
    async def load_usage(self, group_by: str, range_name: str, request: gr.Request) -> tuple[Any, ...]:
        if not await self.is_admin(request):
            return tuple(gr.skip() for _ in self.usage.outputs())
        return await self.usage.load(group_by, range_name, request)

    def loader(self, panel: ResourcePanel) -> Any:
        @shows_errors
        async def load(selected: str | None, request: gr.Request) -> tuple[Any, Any]:
            if not await self.is_admin(request):
                return gr.skip(), gr.skip()
            return await panel.list(selected, request)

        return load
