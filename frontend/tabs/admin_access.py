"""Admin > Access: every user's API tokens (create one, shown once; revoke), the limits (``/api/limits``) and the
audit log (``/api/audit``, paged newest first, filterable)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from frontend.backend import Backend, shows_errors
from frontend.client import BackendError
from frontend.client_admin import JSON, AdminClient
from frontend.tabs.admin_models import table

TOKEN_COLUMNS = ["Id", "Name", "Owner", "Groups", "Created", "Expires", "Revoked"]
LIMIT_COLUMNS = ["Scope", "Subject", "Requests/min", "Tokens/min", "In flight", "Budget", "Period"]
AUDIT_COLUMNS = ["At", "Actor", "Action", "Resource", "Id"]
LIMIT_FIELDS = ["rpm", "tpm", "parallel", "budget_tokens"]


def token_rows(tokens: list[JSON]) -> str:
    rows = [
        [t["id"], t["name"], t.get("display_name") or t["username"], ", ".join(t.get("groups", [])),
         str(t["created_at"])[:16], str(t["expires_at"])[:16], str(t.get("revoked_at") or "")[:16]]
        for t in tokens
    ]  # fmt: skip
    return table(TOKEN_COLUMNS, rows)


def limit_rows(limits: list[JSON]) -> str:
    rows = [[str(x.get(k) if x.get(k) is not None else "") for k in ("scope", "subject", *LIMIT_FIELDS)]
            + [x.get("budget_period") or ""] for x in limits]  # fmt: skip
    return table(LIMIT_COLUMNS, rows)


def audit_rows(events: list[JSON]) -> str:
    rows = [[str(e["at"])[:19], e["actor"], e["action"], e["resource_type"], e["resource_id"]] for e in events]
    return table(AUDIT_COLUMNS, rows)


def refused(exc: BackendError) -> str:
    return f"**The server refused ({exc.status}):** {exc.detail}"


class AccessPanel:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def build(self) -> None:
        with gr.Tab("Tokens", id="admin-tokens"):
            with gr.Row():
                self.token_owner = gr.Textbox(label="Owner (user name)", elem_id="lisa-at-owner")
                self.token_name = gr.Textbox(label="Token name", elem_id="lisa-at-name")
                self.token_days = gr.Number(value=30, label="Expires in (days)", precision=0)
                self.token_create = gr.Button("Create token", variant="primary", elem_id="lisa-at-create")
            self.token_secret = gr.Textbox(
                label="The new token: copy it now, it is shown this once", interactive=False, elem_id="lisa-at-secret"
            )
            with gr.Row():
                self.token_id = gr.Textbox(label="Token id to revoke", elem_id="lisa-at-revoke-id")
                self.token_revoke = gr.Button("Revoke", variant="stop", elem_id="lisa-at-revoke")
                self.token_reload = gr.Button("Reload list")
            self.token_result = gr.Markdown(elem_id="lisa-at-result")
            self.token_list = gr.HTML(elem_id="lisa-at-list")
        with gr.Tab("Limits", id="admin-limits"):
            with gr.Row():
                self.scope = gr.Dropdown(["user", "group", "token"], value="user", label="Scope")
                self.subject = gr.Textbox(label="Subject (user id, group or token id)", elem_id="lisa-al-subject")
            with gr.Row():
                self.limit_values = [gr.Number(label=label, precision=0) for label in LIMIT_COLUMNS[2:6]]
                self.period = gr.Dropdown([("(none)", ""), "day", "month"], value="", label="Budget period")
            with gr.Row():
                self.limit_set = gr.Button("Set limits", variant="primary", elem_id="lisa-al-set")
                self.limit_delete = gr.Button("Remove limits", variant="stop")
            self.limit_result = gr.Markdown(elem_id="lisa-al-result")
            self.limit_list = gr.HTML(elem_id="lisa-al-list")
        with gr.Tab("Audit log", id="admin-audit"):
            with gr.Row():
                self.actor = gr.Textbox(label="Actor")
                self.action = gr.Textbox(label="Action (e.g. model.create)", elem_id="lisa-aa-action")
                self.resource_type = gr.Textbox(label="Resource type")
            with gr.Row():
                self.audit_first = gr.Button("Search", variant="primary", elem_id="lisa-aa-search")
                self.audit_next = gr.Button("Next page", elem_id="lisa-aa-next")
            self.cursor = gr.State(None)
            self.audit_list = gr.HTML(elem_id="lisa-aa-list")

    def wire(self, demo: gr.Blocks) -> None:
        self.token_create.click(
            self.create_token,
            [self.token_owner, self.token_name, self.token_days],
            [self.token_secret, self.token_result],
        ).then(self.list_tokens, outputs=[self.token_list])
        self.token_revoke.click(self.revoke_token, [self.token_id], [self.token_result]).then(
            self.list_tokens, outputs=[self.token_list]
        )
        self.token_reload.click(self.list_tokens, outputs=[self.token_list])
        form = [self.scope, self.subject, *self.limit_values, self.period]
        self.limit_set.click(self.set_limits, form, [self.limit_result]).then(
            self.list_limits, outputs=[self.limit_list]
        )
        self.limit_delete.click(self.delete_limits, [self.scope, self.subject], [self.limit_result]).then(
            self.list_limits, outputs=[self.limit_list]
        )
        filters = [self.actor, self.action, self.resource_type]
        self.audit_first.click(self.audit_page, [*filters, gr.State(None)], [self.audit_list, self.cursor])
        self.audit_next.click(self.audit_page, [*filters, self.cursor], [self.audit_list, self.cursor])

    @shows_errors
    async def load(self, request: gr.Request) -> tuple[Any, ...]:
        """The lists when an admin's page loads."""
        tokens = await self.list_tokens(request)
        limits = await self.list_limits(request)
        audit, cursor = await self.audit_page("", "", "", None, request)
        return tokens, limits, audit, cursor

    def load_outputs(self) -> list[Any]:
        return [self.token_list, self.limit_list, self.audit_list, self.cursor]

    def client(self, request: gr.Request) -> AdminClient:
        return AdminClient(self.backend.client(request))

    @shows_errors
    async def list_tokens(self, request: gr.Request) -> str:
        return token_rows(await self.client(request).tokens())

    @shows_errors
    async def create_token(self, owner: str, name: str, days: float | None, request: gr.Request) -> tuple[str, str]:
        body: JSON = {"name": name.strip() or "token", "username": owner.strip() or None}
        if days:
            body["expires_in_days"] = int(days)
        try:
            created = await self.client(request).create_token({k: v for k, v in body.items() if v is not None})
        except BackendError as exc:
            return "", refused(exc)
        return created["token"], f"Created token **{created['name']}** for {created['username']} ({created['id']})."

    @shows_errors
    async def revoke_token(self, token_id: str, request: gr.Request) -> str:
        if not token_id.strip():
            return "Give the id of the token to revoke."
        try:
            await self.client(request).revoke_token(token_id.strip())
        except BackendError as exc:
            return refused(exc)
        return f"Revoked {token_id.strip()}."

    @shows_errors
    async def list_limits(self, request: gr.Request) -> str:
        return limit_rows(await self.client(request).limits())

    @shows_errors
    async def set_limits(
        self,
        scope: str,
        subject: str,
        rpm: float | None,
        tpm: float | None,
        parallel: float | None,
        budget: float | None,
        period: str,
        request: gr.Request,
    ) -> str:
        values = [rpm, tpm, parallel, budget]
        if not subject.strip():
            return "Give the subject (a user id, a group or a token id)."
        body: JSON = {k: int(v) for k, v in zip(LIMIT_FIELDS, values, strict=True) if v}
        if period:
            body["budget_period"] = period
        try:
            await self.client(request).set_limits(scope, subject.strip(), body)
        except BackendError as exc:
            return refused(exc)
        return f"Limits of {scope} {subject.strip()} set."

    @shows_errors
    async def delete_limits(self, scope: str, subject: str, request: gr.Request) -> str:
        try:
            await self.client(request).delete_limits(scope, subject.strip())
        except BackendError as exc:
            return refused(exc)
        return f"Limits of {scope} {subject.strip()} removed."

    @shows_errors
    async def audit_page(
        self, actor: str, action: str, resource_type: str, cursor: str | None, request: gr.Request
    ) -> tuple[str, str | None]:
        page = await self.client(request).audit(
            cursor=cursor, actor=actor.strip(), action=action.strip(), resource_type=resource_type.strip()
        )
        return audit_rows(page["data"]), page.get("next_cursor")
