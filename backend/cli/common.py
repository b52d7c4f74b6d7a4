"""What every `lisa` command that talks to a running LISA shares: its connection options, the client made from
them, and how a failed request ends the command (the message on the console, a non-zero exit)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from backend.cli.client import ApiError, LisaClient, resolve_token

console = Console()
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_DATA_DIR = Path(".lisa")
UrlOpt = Annotated[str, typer.Option(envvar="LISA_URL", help="Address of a running LISA.")]
TokenOpt = Annotated[str | None, typer.Option(help="API token (default: $LISA_API_KEY or DATA_DIR/admin-token).")]
DataDirOpt = Annotated[Path, typer.Option(envvar="LISA_DATA_DIR", help="Data directory.")]
EXIT_REQUEST, EXIT_SETUP = 1, 2  # the server refused or could not be reached; no token to send


def connect(url: str, token: str | None, data_dir: Path, timeout: float = 30.0) -> LisaClient:
    """A client of the LISA at ``url`` with the token given, from $LISA_API_KEY or the data dir (exit 2 if none)."""
    try:
        return LisaClient(url, resolve_token(token, data_dir), timeout=timeout)
    except ApiError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(EXIT_SETUP) from exc


def fail(exc: ApiError) -> typer.Exit:
    """The request's error as the command's last word (``error 404: model 'x' not found``), exit 1."""
    console.print(f"[red]error[/red] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(EXIT_REQUEST)


def call(client: LisaClient, method: str, path: str, **kwargs: Any) -> Any:
    """The JSON answer; a refused or failed request ends the command (exit 1) with the server's reason."""
    try:
        return client.request(method, path, **kwargs)
    except ApiError as exc:
        raise fail(exc) from exc


def call_text(client: LisaClient, method: str, path: str, **kwargs: Any) -> str:
    """:func:`call` for a plain-text answer (a log tail)."""
    try:
        return client.text(method, path, **kwargs)
    except ApiError as exc:
        raise fail(exc) from exc
