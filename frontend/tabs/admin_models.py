"""Admin > Models: the model wizard (third-party, internal URL, self-hosted local or ECS) and the live model list
(status and events polled by a ``gr.Timer``), with enable, disable and delete."""

from __future__ import annotations

from html import escape
from typing import Any

import gradio as gr

from frontend.backend import Backend, shows_errors
from frontend.client import BackendError
from frontend.client_admin import AdminClient
from frontend.schemas_admin import AdminModel, ModelEvent
from frontend.tabs.admin_wizard import (
    ENGINES,
    FEATURES,
    KINDS,
    LOCAL_KINDS,
    METRICS,
    TYPES,
    Invalid,
    WizardForm,
    model_body,
)

POLL_SECONDS = 3.0
MODEL_COLUMNS = ["Model", "Type", "Hosting", "Status", "Health", "Runs at", "Reason"]
EVENT_COLUMNS = ["At", "Event", "Status", "Step", "Message"]


def table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table of escaped text (a ``gr.Dataframe`` refreshed every few seconds kept stale cells)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='lisa-admin-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def model_rows(models: list[AdminModel]) -> str:
    rows = [[m.id, m.type, m.hosting, m.status, m.health, m.where, m.status_reason or ""] for m in models]
    return table(MODEL_COLUMNS, rows)


def event_rows(events: list[ModelEvent]) -> str:
    rows = [[e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.status or "", e.step or "", e.message] for e in events]
    return table(EVENT_COLUMNS, rows)


class ModelsPanel:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def build(self) -> None:
        with gr.Tab("Models", id="admin-models"):
            self.timer = gr.Timer(POLL_SECONDS, active=False)
            with gr.Row():
                with gr.Column(scale=3):
                    gr.Markdown("**Models** (live)")
                    self.models = gr.HTML(elem_id="lisa-am-models")
                    with gr.Row():
                        self.selected = gr.Dropdown(
                            choices=[], label="Model", allow_custom_value=False, elem_id="lisa-am-selected"
                        )
                        self.enable = gr.Button("Enable", size="sm", elem_id="lisa-am-enable")
                        self.disable = gr.Button("Disable", size="sm", elem_id="lisa-am-disable")
                        self.delete = gr.Button("Delete", size="sm", variant="stop", elem_id="lisa-am-delete")
                    self.action_result = gr.Markdown(elem_id="lisa-am-action")
                    gr.Markdown("**Events of the model**")
                    self.events = gr.HTML(elem_id="lisa-am-events")
                with gr.Column(scale=2), gr.Accordion("Add a model", open=True, elem_id="lisa-am-wizard"):
                    self.build_wizard()

    def build_wizard(self) -> None:
        self.kind = gr.Radio(KINDS, value="internal", label="Where it runs", elem_id="lisa-am-kind")
        with gr.Row():
            self.id = gr.Textbox(label="Model id", elem_id="lisa-am-id")
            self.name = gr.Textbox(label="Display name (optional)", elem_id="lisa-am-name")
        with gr.Row():
            self.type = gr.Dropdown(TYPES, value="textgen", label="Type", elem_id="lisa-am-type")
            self.streaming = gr.Checkbox(value=True, label="Streaming", elem_id="lisa-am-streaming")
        self.features = gr.CheckboxGroup(FEATURES, label="Features")
        with gr.Row():
            self.groups = gr.Textbox(label="Allowed groups (comma-separated; empty: everyone)")
            self.context_window = gr.Number(label="Context window (tokens, optional)", precision=0)
        with gr.Group(visible=False) as self.third_party:
            self.provider_model = gr.Textbox(
                label="LiteLLM model string", placeholder="bedrock/anthropic.claude-3-haiku"
            )
        with gr.Group(visible=True) as self.internal:
            self.base_url = gr.Textbox(label="Base URL", placeholder="http://host:8000/v1", elem_id="lisa-am-base-url")
            self.upstream_model = gr.Textbox(label="Upstream model name (when it differs from the id)")
        with gr.Group(visible=True) as self.credential:
            self.api_key = gr.Textbox(label="API key (stored encrypted, never shown again)", type="password")
        with gr.Group(visible=False) as self.local:
            self.local_kind = gr.Radio(LOCAL_KINDS, value="gguf", label="Local model kind")
            self.model_path = gr.Textbox(label="Model file or folder (under the local model folders)")
            with gr.Row():
                self.threads = gr.Number(value=2, label="Threads", precision=0)
                self.context_size = gr.Number(label="Context size (gguf, optional)", precision=0)
                self.chat_format = gr.Textbox(label="Chat format (gguf, optional)")
        with gr.Group(visible=False) as self.ecs:
            with gr.Row():
                self.engine = gr.Dropdown(ENGINES, value="vllm", label="Engine")
                self.image = gr.Textbox(label="Container image (empty: the platform's)")
            with gr.Row():
                self.instance_type = gr.Textbox(value="g5.xlarge", label="Instance type")
                self.gpu_count = gr.Dropdown(["0", "1", "2", "4", "8"], value="1", label="GPUs")
                self.container_cpu = gr.Number(value=0, label="Container CPU units", precision=0)
                self.memory = gr.Number(value=12288, label="Memory reservation (MiB)", precision=0)
            with gr.Row():
                self.weights_bucket = gr.Textbox(label="Weights bucket (S3)")
                self.weights_prefix = gr.Textbox(label="Weights prefix")
            with gr.Row():
                self.min_capacity = gr.Number(value=1, label="Min capacity", precision=0)
                self.desired_capacity = gr.Number(value=1, label="Desired", precision=0)
                self.max_capacity = gr.Number(value=2, label="Max capacity", precision=0)
            with gr.Row():
                self.metric = gr.Dropdown(METRICS, value="RequestCountPerTarget", label="Scaling metric")
                self.target_value = gr.Number(value=60, label="Target value")
            self.environment = gr.Textbox(label="Container environment (NAME=value, one a line)", lines=3)
        self.submit = gr.Button("Add model", variant="primary", elem_id="lisa-am-submit")
        self.wizard_result = gr.Markdown(elem_id="lisa-am-result")

    def form_inputs(self) -> dict[Any, str]:
        """Each input of the wizard and the form field it fills."""
        components = [
            self.kind, self.id, self.name, self.type, self.streaming, self.features, self.groups,
            self.context_window, self.provider_model, self.base_url, self.upstream_model, self.api_key,
            self.local_kind, self.model_path, self.threads, self.context_size, self.chat_format, self.engine,
            self.image, self.instance_type, self.gpu_count, self.container_cpu, self.memory, self.weights_bucket,
            self.weights_prefix, self.min_capacity, self.desired_capacity, self.max_capacity, self.metric,
            self.target_value, self.environment,
        ]  # fmt: skip
        fields = [f.name for f in WizardForm.__dataclass_fields__.values()]
        return dict(zip(components, fields, strict=True))

    def wire(self, demo: gr.Blocks) -> None:
        self.kind.change(
            self.show_kind, [self.kind], [self.third_party, self.internal, self.credential, self.local, self.ecs]
        )
        self.fields = self.form_inputs()
        self.submit.click(self.add_model, set(self.fields), [self.wizard_result, self.api_key]).then(
            self.refresh, [self.selected], [self.models, self.selected, self.events]
        )
        listing = ([self.selected], [self.models, self.selected, self.events])
        self.timer.tick(self.refresh, *listing, show_progress="hidden")
        self.selected.input(self.refresh, *listing)
        for button, action in ((self.enable, "enable"), (self.disable, "disable"), (self.delete, "delete")):
            button.click(self.act(action), [self.selected], [self.action_result]).then(self.refresh, *listing)

    def start(self) -> Any:
        """The timer's update when the tab opens for an admin (it stays off for everyone else)."""
        return gr.Timer(active=True)

    @staticmethod
    def show_kind(kind: str) -> tuple[Any, ...]:
        return (
            gr.update(visible=kind == "third_party"),
            gr.update(visible=kind == "internal"),
            gr.update(visible=kind in ("third_party", "internal")),
            gr.update(visible=kind == "local"),
            gr.update(visible=kind == "ecs"),
        )

    @shows_errors
    async def add_model(self, values: dict[Any, Any], request: gr.Request) -> tuple[str, Any]:
        try:
            body = model_body(WizardForm(**{self.fields[c]: v for c, v in values.items()}))
        except Invalid as exc:
            return f"**Not sent:** {exc}", gr.skip()
        client = AdminClient(self.backend.client(request))
        try:
            answer = await client.create_model(body)
        except BackendError as exc:
            return f"**The server refused ({exc.status}):** {exc.detail}", gr.skip()
        if "workflow_id" in answer or answer.get("kind"):
            return f"Deploying **{body['id']}**: follow its status and events in the list.", ""
        return f"Added **{answer.get('id', body['id'])}** (status {answer.get('status', '?')}).", ""

    @shows_errors
    async def refresh(self, selected: str | None, request: gr.Request) -> tuple[Any, Any, Any]:
        client = AdminClient(self.backend.client(request))
        try:
            models = await client.models()
        except BackendError as exc:
            if exc.status == 403:  # not an admin (the tab is hidden then): nothing to show
                return gr.skip(), gr.skip(), gr.skip()
            raise
        ids = [m.id for m in models]
        if selected not in ids:
            selected = None
        events = await client.model_events(selected) if selected else []
        return model_rows(models), gr.update(choices=ids, value=selected), event_rows(events)

    def act(self, action: str) -> Any:
        @shows_errors
        async def run(model_id: str | None, request: gr.Request) -> str:
            if not model_id:
                return "Choose a model first."
            client = AdminClient(self.backend.client(request))
            try:
                if action == "delete":
                    await client.delete_model(model_id)
                    return f"Deleting **{model_id}**."
                await client.switch_model(model_id, action == "enable")
            except BackendError as exc:
                return f"**The server refused ({exc.status}):** {exc.detail}"
            return f"{'Enabling' if action == 'enable' else 'Disabling'} **{model_id}**."

        return run
