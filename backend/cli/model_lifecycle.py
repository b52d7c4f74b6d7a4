"""`lisa models deploy/update/enable/disable/delete/events/logs`: a model's lifecycle on a running LISA, over its
HTTP API (docs/lifecycle-local.md).

A deployment spec comes from a file (``--spec``, YAML or JSON) and ``--set key=value`` pairs over it (dotted keys
reach nested objects: ``--set autoscaling.max_capacity=4``; values are read as JSON where they parse, else as text).
Operations that start a workflow answer 202; ``--wait`` then follows the model's events until it settles.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from backend.cli.client import ApiError, LisaClient
from backend.cli.common import (
    DEFAULT_DATA_DIR,
    DEFAULT_URL,
    DataDirOpt,
    TokenOpt,
    UrlOpt,
    call,
    call_text,
    connect,
    console,
    fail,
)

SETTLED = {"InService", "Stopped", "Failed"}
MAX_SPEC_BYTES = 1024 * 1024
SpecOpt = Annotated[Path | None, typer.Option("--spec", help="The deployment spec: a YAML or JSON file.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="A spec field, KEY=VALUE (repeatable; dotted keys nest).")
]
WaitOpt = Annotated[bool, typer.Option(help="Follow the model's events until it settles.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds --wait waits at most.")]


# ---------------------------------------------------------------------------------------------- the requests
def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON where it parses (numbers, true/false, null, lists, objects), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_set(spec: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    parts = key.split(".")
    if not sep or not all(parts):
        raise typer.BadParameter(f"--set takes KEY=VALUE (dotted keys for nested fields), not {assignment!r}")
    target = spec
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise typer.BadParameter(f"--set {key}: '{part}' is not an object in the spec")
        target = child
    target[parts[-1]] = parse_value(raw)


def load_spec(path: Path | None, assignments: list[str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if path is not None:
        try:
            if path.stat().st_size > MAX_SPEC_BYTES:
                raise typer.BadParameter(f"--spec {path}: larger than {MAX_SPEC_BYTES} bytes")
            loaded = (
                yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
            )
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise typer.BadParameter(f"--spec {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"--spec {path}: the spec must be a mapping of fields")
        spec = loaded
    for assignment in assignments or []:
        apply_set(spec, assignment)
    return spec


def deploy_body(
    model_id: str,
    model_type: str,
    deployer: str | None,
    spec: dict[str, Any],
    base_url: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """POST /api/models: a model LISA deploys (``deployer`` and its spec) or one already running at ``base_url``."""
    if (deployer is None) == (base_url is None):
        raise typer.BadParameter("give either --deployer (LISA runs the model) or --base-url (it runs already)")
    if base_url is not None and spec:
        raise typer.BadParameter("--spec and --set describe a deployment: use them with --deployer, not --base-url")
    body: dict[str, Any] = {"id": model_id, "type": model_type, "hosting": "internal"}
    if deployer is not None:
        body["deployment"] = {"deployer": deployer, "spec": spec}
    else:
        body["base_url"] = base_url
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def update_body(spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """PATCH /api/models/{id}: registry fields, and the deployment's spec fields to change."""
    body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if spec:
        body["deployment"] = {"spec": spec}
    if not body:
        raise typer.BadParameter("nothing to change: give --spec, --set or a field option")
    return body


def event_line(event: dict[str, Any]) -> str:
    parts = [str(event.get("at", "")), str(event.get("kind", ""))]
    parts += [f"[{event['status']}]"] if event.get("status") else []
    parts += [f"{event['step']}:"] if event.get("step") else []
    parts.append(str(event.get("message", "")))
    return " ".join(parts)


def model_path(model_id: str, suffix: str = "") -> str:
    return f"/api/models/{model_id}{suffix}"


# ---------------------------------------------------------------------------------------------- talking to LISA
def _report(model_id: str, answer: Any, verb: str) -> None:
    if isinstance(answer, dict) and "workflow" in answer:  # 202: a workflow started
        workflow = answer["workflow"]
        console.print(f"{verb} [bold]{escape(model_id)}[/bold]: workflow {workflow['id']} ({workflow['kind']}) started")
    elif isinstance(answer, dict) and "status" in answer:
        console.print(f"{verb} [bold]{escape(model_id)}[/bold]: {answer['status']}")
    else:
        console.print(f"{verb} [bold]{escape(model_id)}[/bold]")


def follow(client: LisaClient, model_id: str, timeout: float, *, gone_is_done: bool = False) -> str | None:
    """Print the model's events as they come until its status settles (None: deleted); exit 1 on Failed."""
    cursor: str | None = None  # of the last page read: it is read again (new events land there), seen ones skipped
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        try:
            while True:
                params = {"cursor": cursor} if cursor else {}
                page = client.request("GET", model_path(model_id, "/events"), params=params)
                for event in page["data"]:
                    if str(event.get("id")) not in seen:
                        seen.add(str(event.get("id")))
                        console.print(escape(event_line(event)))
                if not page.get("next_cursor"):
                    break
                cursor = page["next_cursor"]
            model = client.request("GET", model_path(model_id))
        except ApiError as exc:
            if gone_is_done and str(exc).startswith("404"):
                console.print(f"deleted [bold]{escape(model_id)}[/bold]")
                return None
            raise fail(exc) from exc
        status = str(model["status"])
        if status in SETTLED and not gone_is_done:
            if status == "Failed":
                console.print(f"[red]{escape(model_id)} failed[/red]: {escape(str(model.get('status_reason') or ''))}")
                raise typer.Exit(1)
            console.print(f"[bold]{escape(model_id)}[/bold] is {status}")
            return status
        if time.monotonic() > deadline:
            console.print(f"[red]still {status} after {timeout:g}s[/red]")
            raise typer.Exit(1)
        time.sleep(2)


# ---------------------------------------------------------------------------------------------- commands
def deploy(
    model_id: Annotated[str, typer.Argument(help="Model id clients will use.")],
    deployer: Annotated[str | None, typer.Option(help="local | ecs: LISA runs the model.")] = None,
    spec_file: SpecOpt = None,
    sets: SetOpt = None,
    base_url: Annotated[str | None, typer.Option(help="A server already running (no deployment).")] = None,
    type_: Annotated[str, typer.Option("--type", help="textgen | embedding | imagegen")] = "textgen",
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    streaming: Annotated[bool | None, typer.Option(help="Whether the model streams.")] = None,
    context_window: Annotated[int | None, typer.Option(help="Tokens of context, when known.")] = None,
    group: Annotated[list[str] | None, typer.Option(help="Allowed group (repeatable).")] = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 3600.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Deploy a model (LISA runs it: --deployer with --spec/--set), or register one running at --base-url."""
    body = deploy_body(
        model_id, type_, deployer, load_spec(spec_file, sets), base_url,
        name=name, streaming=streaming, context_window=context_window, allowed_groups=group,
    )  # fmt: skip
    client = connect(url, token, data_dir)
    _report(model_id, call(client, "POST", "/api/models", json=body), "deploying" if deployer else "registered")
    if wait and deployer:
        follow(client, model_id, timeout)


def update(
    model_id: str,
    spec_file: SpecOpt = None,
    sets: SetOpt = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    context_window: Annotated[int | None, typer.Option(help="Tokens of context.")] = None,
    group: Annotated[list[str] | None, typer.Option(help="Allowed group (repeatable; replaces them).")] = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 3600.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Change a model: registry fields, and its deployment's spec (--spec/--set: the fields given change)."""
    body = update_body(load_spec(spec_file, sets), name=name, context_window=context_window, allowed_groups=group)
    client = connect(url, token, data_dir)
    _report(model_id, call(client, "PATCH", model_path(model_id), json=body), "updating")
    if wait:
        follow(client, model_id, timeout)


def enable(
    model_id: str,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 3600.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Start a Stopped model."""
    client = connect(url, token, data_dir)
    _report(model_id, call(client, "POST", model_path(model_id, "/enable")), "enabling")
    if wait:
        follow(client, model_id, timeout)


def disable(
    model_id: str,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 3600.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Stop a model in service (the gateway stops routing to it at once)."""
    client = connect(url, token, data_dir)
    _report(model_id, call(client, "POST", model_path(model_id, "/disable")), "disabling")
    if wait:
        follow(client, model_id, timeout)


def delete(
    model_id: str,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 3600.0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Delete a model, and its deployment when LISA runs it (refused while a repository or assistant uses it)."""
    client = connect(url, token, data_dir)
    answer = call(client, "DELETE", model_path(model_id))
    _report(model_id, answer, "deleting" if answer else "deleted")
    if wait and answer:
        follow(client, model_id, timeout, gone_is_done=True)


def events(
    model_id: str,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="The latest events to show (oldest first).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """What happened to a model: status changes, workflow steps, its deployment's events, health."""
    client = connect(url, token, data_dir)
    latest: deque[dict[str, Any]] = deque(maxlen=limit)
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        page = call(client, "GET", model_path(model_id, "/events"), params=params)
        latest.extend(page["data"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    for event in latest:
        if as_json:
            print(json.dumps(event))
        else:
            console.print(escape(event_line(event)), soft_wrap=True)


def logs(
    model_id: str,
    lines: Annotated[int, typer.Option(min=1, max=10_000, help="Lines from the end of the log.")] = 100,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """The last lines of a deployed model's server output (a local model's log, an ECS model's CloudWatch logs)."""
    text = call_text(connect(url, token, data_dir), "GET", model_path(model_id, "/logs"), params={"lines": lines})
    print(text, end="" if text.endswith("\n") or not text else "\n")
