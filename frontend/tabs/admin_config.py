"""Admin > Configuration: the feature toggles, the system banner and the default model (``/api/configuration``),
and the history of the configuration (who changed what, when; restore an old version). Changes take effect without
a restart: every page reads the configuration when it loads."""

from __future__ import annotations

from typing import Any

import gradio as gr

from frontend.backend import Backend, shows_errors
from frontend.client import BackendError
from frontend.client_admin import JSON, AdminClient
from frontend.schemas_admin import ConfigVersion

HISTORY_COLUMNS = ["Version", "At", "By", "Changes"]


def toggle_choices(config: JSON) -> list[tuple[str, str]]:
    labels = []
    for name, state in sorted(config.get("features", {}).items()):
        pin = f" — pinned by {state['pinned_by']}" if state.get("pinned_by") else ""
        labels.append((f"{name}: {state.get('description', '')}{pin}", name))
    return labels


def history_rows(versions: list[ConfigVersion]) -> list[list[Any]]:
    rows = []
    for v in versions:
        changes = "; ".join(f"{c.field}: {c.before!r} → {c.after!r}" for c in v.changes)
        if v.restored_from is not None:
            changes = f"restored version {v.restored_from}; {changes}"
        rows.append([v.version, v.created_at.strftime("%Y-%m-%d %H:%M:%S"), v.created_by, changes])
    return rows


def changes_of(config: JSON, enabled: list[str]) -> dict[str, bool]:
    """The toggles whose value in force differs from the boxes ticked (pinned ones cannot change)."""
    features: dict[str, Any] = config.get("features", {})
    return {
        name: name in enabled
        for name, state in features.items()
        if (name in enabled) != bool(state.get("enabled")) and not state.get("pinned_by")
    }


class ConfigPanel:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def build(self) -> None:
        with gr.Tab("Configuration", id="admin-config"):
            self.loaded = gr.State({})
            self.info = gr.Markdown(elem_id="lisa-ac-info")
            self.toggles = gr.CheckboxGroup(choices=[], label="Features turned on", elem_id="lisa-ac-toggles")
            with gr.Group():
                self.banner_on = gr.Checkbox(label="Show the system banner", elem_id="lisa-ac-banner-on")
                self.banner_text = gr.Textbox(label="Banner text", elem_id="lisa-ac-banner-text")
                with gr.Row():
                    self.text_color = gr.Textbox(label="Text colour (#rrggbb, optional)")
                    self.background = gr.Textbox(label="Background colour (#rrggbb, optional)")
            self.default_model = gr.Dropdown(
                choices=[], label="Default model for new chats", allow_custom_value=False, elem_id="lisa-ac-default"
            )
            with gr.Row():
                self.save = gr.Button("Save configuration", variant="primary", elem_id="lisa-ac-save")
                self.reload = gr.Button("Reload", elem_id="lisa-ac-reload")
            self.result = gr.Markdown(elem_id="lisa-ac-result")
            self.history = gr.Dataframe(
                headers=HISTORY_COLUMNS, interactive=False, label="History (newest first)", elem_id="lisa-ac-history"
            )
            with gr.Row():
                self.version = gr.Number(label="Version to restore", precision=0)
                self.restore = gr.Button("Restore that version", elem_id="lisa-ac-restore")

    def outputs(self) -> list[Any]:
        return [
            self.loaded, self.info, self.toggles, self.banner_on, self.banner_text, self.text_color, self.background,
            self.default_model, self.history,
        ]  # fmt: skip

    def wire(self, demo: gr.Blocks) -> None:
        self.reload.click(self.load, outputs=self.outputs())
        form = [self.loaded, self.toggles, self.banner_on, self.banner_text, self.text_color, self.background,
                self.default_model]  # fmt: skip
        self.save.click(self.store, form, [self.result]).then(self.load, outputs=self.outputs())
        self.restore.click(self.restore_version, [self.version], [self.result]).then(self.load, outputs=self.outputs())

    @shows_errors
    async def load(self, request: gr.Request) -> tuple[Any, ...]:
        client = AdminClient(self.backend.client(request))
        try:
            config = await client.configuration()
            history = await client.configuration_history()
            model_ids = [m.id for m in await client.models() if m.type == "textgen"]
        except BackendError as exc:
            if exc.status == 403:
                return tuple(gr.skip() for _ in self.outputs())
            raise
        banner = config.get("banner", {})
        enabled = [name for name, state in config.get("features", {}).items() if state.get("enabled")]
        info = f"Version {config.get('version', 0)}" + (
            f", written by {config['updated_by']} at {config['updated_at']}" if config.get("updated_by") else ""
        )
        default = config.get("default_model_id")
        return (
            config,
            info,
            gr.update(choices=toggle_choices(config), value=enabled),
            bool(banner.get("enabled")),
            banner.get("text", ""),
            banner.get("text_color") or "",
            banner.get("background_color") or "",
            gr.update(choices=[("(none)", "")] + [(m, m) for m in model_ids], value=default or ""),
            history_rows(history),
        )

    @shows_errors
    async def store(
        self,
        config: JSON,
        enabled: list[str],
        banner_on: bool,
        text: str,
        text_color: str,
        background: str,
        default_model: str | None,
        request: gr.Request,
    ) -> str:
        if not config:
            return "Load the configuration first."
        body: JSON = {}
        if features := changes_of(config, enabled or []):
            body["features"] = features
        banner = {
            "enabled": banner_on,
            "text": text or "",
            "text_color": text_color.strip() or None,
            "background_color": background.strip() or None,
        }
        if banner != {**{"text_color": None, "background_color": None}, **config.get("banner", {})}:
            body["banner"] = banner
        if (default_model or None) != config.get("default_model_id"):
            body["default_model_id"] = default_model or None
        if not body:
            return "Nothing changed."
        try:
            saved = await AdminClient(self.backend.client(request)).update_configuration(body)
        except BackendError as exc:
            return f"**The server refused ({exc.status}):** {exc.detail}"
        return f"Saved: version {saved.get('version')}. Users see it when their page next loads."

    @shows_errors
    async def restore_version(self, version: float | None, request: gr.Request) -> str:
        if not version:
            return "Give the version to restore."
        try:
            await AdminClient(self.backend.client(request)).restore_configuration(int(version))
        except BackendError as exc:
            return f"**The server refused ({exc.status}):** {exc.detail}"
        return f"Restored version {int(version)} (as a new version)."
