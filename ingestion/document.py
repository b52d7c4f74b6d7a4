"""What loaders produce and chunkers consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class IngestionError(ValueError):
    """A file that cannot be ingested, with a reason a person can act on."""


@dataclass
class Section:
    """A run of text from one place in a document (a PDF page, a whole text file, ...)."""

    text: str
    page: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    text: str
    metadata: dict[str, Any]
