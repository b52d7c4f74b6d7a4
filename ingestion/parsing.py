"""One file to chunks: parse by type, then split by the chosen strategy, each chunk carrying its metadata."""

from __future__ import annotations

import os
from typing import Any

from ingestion.chunkers import chunk_sections, chunking_from_spec
from ingestion.document import Chunk, IngestionError
from ingestion.loaders import MAX_BYTES, load


def parse(
    name: str, data: bytes, chunking: dict[str, Any], metadata: dict[str, Any], max_bytes: int = MAX_BYTES
) -> list[Chunk]:
    """Raises IngestionError (with a reason a person can act on) for unsupported, corrupt or oversized files."""
    sections = load(name, data, max_bytes)
    spec = {k: v for k, v in chunking.items() if v is not None}
    return chunk_sections(sections, chunking_from_spec(spec), metadata)


def parse_file(
    path: str, name: str, chunking: dict[str, Any], metadata: dict[str, Any], max_bytes: int = MAX_BYTES
) -> list[Chunk]:
    """``parse`` of a file on disk (what a parser process is handed: a path, never the bytes through a pipe)."""
    size = os.stat(path).st_size
    if size > max_bytes:
        raise IngestionError(f"{name}: {size} bytes is over the limit of {max_bytes} bytes")
    with open(path, "rb") as file:
        data = file.read(max_bytes + 1)
    return parse(name, data, chunking, metadata, max_bytes)
