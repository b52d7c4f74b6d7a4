"""The API tokens tab: a user's own API tokens (create one, shown once; revoke), when the ``enable_user_api_tokens``
toggle allows it (the backend refuses otherwise). Admins manage everyone's tokens in the Admin tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from frontend.backend import Backend, shows_errors
from frontend.client import BackendError
from frontend.client_admin import AdminClient
from frontend.page_load import PageLoad
from frontend.tabs.admin_access import token_rows

FEATURE = "enable_user_api_tokens"


class MyTokensTab:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def build(self) -> None:
        with gr.Tab("API tokens", id="my-tokens", elem_id="lisa-mytokens-tab"):
            self.closed = gr.Markdown("API tokens are turned off for you by an administrator.", elem_id="lisa-mt-off")
            with gr.Column(visible=False, elem_id="lisa-mt-content") as self.content:
                with gr.Row():
                    self.name = gr.Textbox(label="Token name", elem_id="lisa-mt-name")
                    self.days = gr.Number(value=30, label="Expires in (days)", precision=0)
                    self.create = gr.Button("Create token", variant="primary", elem_id="lisa-mt-create")
                self.secret = gr.Textbox(
                    label="Your new token: copy it now, it is shown this once",
                    interactive=False,
                    elem_id="lisa-mt-secret",
                )
                with gr.Row():
                    self.token_id = gr.Textbox(label="Token id to revoke")
                    self.revoke = gr.Button("Revoke", variant="stop")
                self.result = gr.Markdown(elem_id="lisa-mt-result")
                self.listing = gr.HTML(elem_id="lisa-mt-list")

    def wire(self, demo: gr.Blocks, page: PageLoad) -> None:
        page.add(self.on_load, [], [self.closed, self.content, self.listing])
        self.create.click(self.create_token, [self.name, self.days], [self.secret, self.result]).then(
            self.list_tokens, outputs=[self.listing]
        )
        self.revoke.click(self.revoke_token, [self.token_id], [self.result]).then(
            self.list_tokens, outputs=[self.listing]
        )

    @shows_errors
    async def on_load(self, request: gr.Request) -> tuple[Any, Any, Any]:
        client = self.backend.client(request)
        if not (await client.configuration()).allows(FEATURE):
            return gr.skip(), gr.skip(), gr.skip()
        me = await client.me()
        return (
            gr.update(visible=False),
            gr.update(visible=True),
            token_rows(await AdminClient(client).tokens(me.username)),
        )

    @shows_errors
    async def list_tokens(self, request: gr.Request) -> str:
        client = self.backend.client(request)
        return token_rows(await AdminClient(client).tokens((await client.me()).username))

    @shows_errors
    async def create_token(self, name: str, days: float | None, request: gr.Request) -> tuple[str, str]:
        body: dict[str, Any] = {"name": name.strip() or "token", **({"expires_in_days": int(days)} if days else {})}
        try:
            created = await AdminClient(self.backend.client(request)).create_token(body)
        except BackendError as exc:
            return "", f"**The server refused ({exc.status}):** {exc.detail}"
        return created["token"], f"Created **{created['name']}** ({created['id']})."

    @shows_errors
    async def revoke_token(self, token_id: str, request: gr.Request) -> str:
        try:
            await AdminClient(self.backend.client(request)).revoke_token(token_id.strip())
        except BackendError as exc:
            return f"**The server refused ({exc.status}):** {exc.detail}"
        return f"Revoked {token_id.strip()}."
