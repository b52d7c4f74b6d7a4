"""One file to chunks: parse by type, then split by the chosen strategy, each chunk carrying its metadata.

``extract_file`` is the other use: one file to its whole text (documents put into a chat's context), where source
code files are read as plain text too.
"""

from __future__ import annotations

import os
from typing import Any

from ingestion.chunkers import chunk_sections, chunking_from_spec
from ingestion.document import Chunk, IngestionError
from ingestion.loaders import MAX_BYTES, load
from ingestion.loaders.text import load_text

# Source code and configuration read as plain text when a file's whole text is wanted (not for RAG, whose loaders
# decide what a collection takes). Types with a loader of their own (.json, .yaml, .xml, .html, .csv) keep it.
CODE_SUFFIXES = frozenset({
    ".py", ".pyi", ".ipynb", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".java", ".kt", ".kts", ".scala", ".groovy",
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".m", ".mm", ".r",
    ".jl", ".lua", ".pl", ".pm", ".sh", ".bash", ".zsh", ".ps1", ".bat", ".sql", ".css", ".scss", ".less", ".vue",
    ".svelte", ".toml", ".ini", ".cfg", ".conf", ".properties", ".env", ".gradle", ".tf", ".hcl", ".proto", ".graphql",
    ".dockerfile", ".mk", ".cmake", ".rst", ".tex", ".diff", ".patch",
})  # fmt: skip


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


def extract_file(path: str, name: str, max_bytes: int = MAX_BYTES) -> str:
    """A file's whole text (its sections joined by blank lines): what a parser process returns for a document put
    into a chat's context. Code files (``CODE_SUFFIXES``) are read as text; other types go through their loader.
    Raises IngestionError as ``parse`` does."""
    size = os.stat(path).st_size
    if size > max_bytes:
        raise IngestionError(f"{name}: {size} bytes is over the limit of {max_bytes} bytes")
    with open(path, "rb") as file:
        data = file.read(max_bytes + 1)
    suffix = os.path.splitext(name)[1].lower()
    if suffix in CODE_SUFFIXES:
        sections = [s for s in load_text(data, name) if s.text.strip()]
        if not sections:
            raise IngestionError(f"{name}: no text found")
    else:
        sections = load(name, data, max_bytes)
    return "\n\n".join(section.text for section in sections)
