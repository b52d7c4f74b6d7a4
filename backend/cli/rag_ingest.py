"""`lisa ingest PATH...`: upload local files and folders into a collection of a running LISA, with a progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from backend.cli.client import ApiError, resolve_token

console = Console()


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (searched recursively for supported types).")],
    repository: Annotated[str, typer.Option("--repository", "-r", help="Repository id.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection id.")] = "default",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag for every chunk (repeatable).")] = None,
    chunking: Annotated[
        str | None, typer.Option(help='Chunking override as JSON, e.g. \'{"strategy": "tokens", "size": 256}\'.')
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the jobs, with a progress bar.")] = True,
    url: Annotated[str, typer.Option(envvar="LISA_URL", help="Address of a running LISA.")] = "http://127.0.0.1:8080",
    token: Annotated[
        str | None, typer.Option(help="API token (default: $LISA_API_KEY or DATA_DIR/admin-token).")
    ] = None,
    data_dir: Annotated[Path, typer.Option(envvar="LISA_DATA_DIR", help="Data directory.")] = Path(".lisa"),
) -> None:
    """Ingest local files into a collection: batches of uploads, one job each; exits 1 if any document failed."""
    from ingestion import IngestError  # the loaders load only for this command
    from ingestion import ingest as ingest_files

    try:
        secret = resolve_token(token, data_dir)
    except ApiError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from exc
    if chunking is not None:
        try:
            json.loads(chunking)
        except ValueError as exc:
            console.print(f"[red]error[/red] --chunking is not valid JSON: {escape(str(exc))}")
            raise typer.Exit(2) from exc
    try:
        result = ingest_files(
            paths, repository, collection, url=url, token=secret, tags=tag or [], chunking=chunking, wait=wait
        )
    except IngestError as exc:
        console.print(f"[red]error[/red] {escape(exc.message)}")
        if exc.job_ids:
            console.print(f"jobs already created (they go on): {', '.join(exc.job_ids)}")
        raise typer.Exit(1) from exc
    console.print(escape(result.summary()), highlight=False)
    if result.failures:
        raise typer.Exit(1)
