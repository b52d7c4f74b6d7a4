"""The `lisa` command: run the platform, and administer a running one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from backend.cli import model_lifecycle
from backend.cli.common import DEFAULT_DATA_DIR, DEFAULT_URL, DataDirOpt, TokenOpt, UrlOpt, call, connect, console
from backend.cli.rag import rag_app
from backend.cli.rag_ingest import ingest as ingest_command

app = typer.Typer(help="LISA: a self-hostable LLM platform.", no_args_is_help=True)
models_app = typer.Typer(help="Manage the model registry.", no_args_is_help=True)
tokens_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(tokens_app, name="tokens")
app.add_typer(rag_app, name="rag")
app.command("ingest")(ingest_command)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (default ./.lisa).")] = None,
    database_url: Annotated[str | None, typer.Option(help="External PostgreSQL instead of the embedded one.")] = None,
    local_models: Annotated[bool, typer.Option(help="Start the local llama.cpp and embedding servers.")] = True,
    config: Annotated[Path | None, typer.Option(help="YAML settings file.")] = None,
) -> None:
    """Run LISA: embedded PostgreSQL, migrations, local models, the API and the OpenAI-compatible gateway."""
    overrides = {
        "LISA_HOST": host,
        "LISA_PORT": port,
        "LISA_WORKERS": workers,
        "LISA_DATA_DIR": data_dir,
        "LISA_DATABASE_URL": database_url,
        "LISA_CONFIG_FILE": config,
    }
    for key, value in overrides.items():
        if value is not None:
            os.environ[key] = str(value)
    if not local_models:
        os.environ["LISA_LOCAL_MODELS"] = "false"
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from pydantic import ValidationError

    from backend.config import get_settings
    from backend.runtime.launch import run

    try:
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            console.print(
                f"[red]refusing to start:[/red] {str(error['msg']).removeprefix('Value error, ')}", soft_wrap=True
            )
        raise typer.Exit(2) from None
    run(settings)


@models_app.command("list")
def models_list(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, data_dir: DataDirOpt = DEFAULT_DATA_DIR) -> None:
    """List the models you can see."""
    items = connect(url, token, data_dir).paged("/api/models")
    table = Table("id", "type", "hosting", "status", "streaming", "target")
    for m in items:
        target = m.get("base_url") or m.get("provider_model") or ""
        table.add_row(m["id"], m["type"], m["hosting"], m["status"], str(m["streaming"]).lower(), target)
    console.print(table)


@models_app.command("add")
def models_add(
    model_id: Annotated[str, typer.Argument(help="Model id clients will use.")],
    type_: Annotated[str, typer.Option("--type", help="textgen | embedding | imagegen")] = "textgen",
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server (internal hosting).")] = None,
    provider_model: Annotated[str | None, typer.Option(help="LiteLLM model string (third_party hosting).")] = None,
    api_key: Annotated[str | None, typer.Option(help="Upstream API key (stored encrypted).")] = None,
    upstream_model: Annotated[str | None, typer.Option(help="Model name the upstream expects.")] = None,
    streaming: Annotated[bool | None, typer.Option(help="Whether the model streams.")] = None,
    group: Annotated[list[str] | None, typer.Option(help="Allowed group (repeatable).")] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Register a model."""
    body: dict[str, object] = {
        "id": model_id,
        "type": type_,
        "hosting": "third_party" if provider_model else "internal",
    }
    optional = {
        "base_url": base_url,
        "provider_model": provider_model,
        "api_key": api_key,
        "upstream_model": upstream_model,
        "streaming": streaming,
        "allowed_groups": group,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    created = call(connect(url, token, data_dir), "POST", "/api/models", json=body)
    assert isinstance(created, dict)
    console.print(f"added [bold]{created['id']}[/bold] ({created['type']}, {created['hosting']})")


@tokens_app.command("create")
def tokens_create(
    name: str,
    days: Annotated[int | None, typer.Option(help="Days until it expires (default 90).")] = None,
    user: Annotated[str | None, typer.Option(help="Owner (admins only; default: you).")] = None,
    group: Annotated[list[str] | None, typer.Option(help="Group the token carries (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Create an API token; the secret is printed once."""
    body: dict[str, object] = {"name": name}
    if days is not None:
        body["expires_in_days"] = days
    if user is not None:
        body["username"] = user
    if group:
        body["groups"] = group
    created = call(connect(url, token, data_dir), "POST", "/api/tokens", json=body)
    assert isinstance(created, dict)
    if as_json:
        print(json.dumps(created))
        return
    console.print(f"token [bold]{created['id']}[/bold] for {created['username']}, expires {created['expires_at']}")
    console.print("secret (shown once):")
    print(created["token"])


@tokens_app.command("list")
def tokens_list(
    all_users: Annotated[bool, typer.Option("--all", help="Every user's tokens (admins).")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """List API tokens (never their secrets)."""
    items = connect(url, token, data_dir).paged("/api/tokens", all_users=str(all_users).lower())
    table = Table("id", "name", "user", "prefix", "expires", "active")
    for t in items:
        table.add_row(t["id"], t["name"], t["username"], t["prefix"], t["expires_at"], str(t["active"]).lower())
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: str,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
) -> None:
    """Revoke an API token; it stops working at once, in every backend process."""
    call(connect(url, token, data_dir), "DELETE", f"/api/tokens/{token_id}")
    console.print(f"revoked [bold]{token_id}[/bold]")


# A model's lifecycle (backend/cli/model_lifecycle.py), listed after the registry's own commands; `remove` is the
# older name of `delete` (one command: a model LISA deploys goes with its deployment).
for _name in ("deploy", "update", "enable", "disable", "delete", "events", "logs"):
    models_app.command(_name)(getattr(model_lifecycle, _name))
models_app.command("remove", help="Delete a model (the same as `lisa models delete`).")(model_lifecycle.delete)


if __name__ == "__main__":
    app()
