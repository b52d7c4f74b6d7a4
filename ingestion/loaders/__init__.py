"""Loaders by file type, behind one factory: a new file type is one module and one line in ``LOADERS``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ingestion.document import IngestionError, Section
from ingestion.loaders import office, structured, text

Loader = Callable[[bytes, str], list[Section]]

LOADERS: dict[str, Loader] = {
    ".txt": text.load_text,
    ".md": text.load_text,
    ".markdown": text.load_text,
    ".log": text.load_text,
    ".html": text.load_html,
    ".htm": text.load_html,
    ".csv": structured.load_csv,
    ".json": structured.load_json,
    ".yaml": structured.load_yaml,
    ".yml": structured.load_yaml,
    ".xml": structured.load_xml,
    ".pdf": office.load_pdf,
    ".docx": office.load_docx,
}
MAX_BYTES = 50 * 1024 * 1024


def load(name: str, data: bytes, max_bytes: int = MAX_BYTES) -> list[Section]:
    """Parse ``data`` as the type its name says; refuse unknown types, oversized files and empty results."""
    suffix = Path(name).suffix.lower()
    loader = LOADERS.get(suffix)
    if loader is None:
        supported = ", ".join(sorted(LOADERS))
        raise IngestionError(f"{name}: unsupported file type '{suffix or '(none)'}' (supported: {supported})")
    if len(data) > max_bytes:
        raise IngestionError(f"{name}: {len(data)} bytes is over the limit of {max_bytes} bytes")
    sections = [s for s in loader(data, name) if s.text.strip()]
    if not sections:
        raise IngestionError(f"{name}: no text found")
    return sections
