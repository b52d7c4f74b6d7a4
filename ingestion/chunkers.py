"""Chunking strategies: fixed characters (with overlap, preferring to cut at whitespace), markdown headers, none."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from ingestion.document import Chunk, IngestionError, Section

HEADER = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass(frozen=True)
class FixedChunking:
    size: int = 512
    overlap: int = 51
    kind: Literal["fixed"] = "fixed"

    def __post_init__(self) -> None:
        if not 100 <= self.size <= 10_000:
            raise IngestionError(f"chunk size must be between 100 and 10000 characters, got {self.size}")
        if not 0 <= self.overlap <= self.size // 2:
            raise IngestionError(f"overlap must be between 0 and size/2 ({self.size // 2}), got {self.overlap}")

    def split(self, text: str) -> list[str]:
        text = text.strip()
        pieces: list[str] = []
        start = 0
        while start < len(text):
            end = min(start + self.size, len(text))
            if end < len(text):
                cut = text.rfind(" ", start + self.size // 2, end)  # do not cut words when avoidable
                if cut > start:
                    end = cut
            piece = text[start:end].strip()
            if piece:
                pieces.append(piece)
            if end >= len(text):
                break
            nxt = max(end - self.overlap, start + 1)
            if self.overlap and nxt < end:  # begin the overlap at a word boundary
                space = text.find(" ", nxt, end)
                nxt = space + 1 if space != -1 else nxt
            start = nxt
        return pieces


@dataclass(frozen=True)
class MarkdownChunking:
    """One chunk per section under a header, each split further by size when long; headers kept as context."""

    size: int = 2000
    kind: Literal["markdown"] = "markdown"

    def split(self, text: str) -> list[str]:
        marks = list(HEADER.finditer(text))
        if not marks:
            return FixedChunking(self.size, 0).split(text)
        pieces: list[str] = []
        preamble = text[: marks[0].start()].strip()
        if preamble:
            pieces += FixedChunking(self.size, 0).split(preamble)
        trail: list[tuple[int, str]] = []
        for i, mark in enumerate(marks):
            level, title = len(mark.group(1)), mark.group(2)
            trail = [(lvl, t) for lvl, t in trail if lvl < level] + [(level, title)]
            body = text[mark.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip()
            context = " > ".join(t for _, t in trail)
            for part in FixedChunking(self.size, 0).split(body) if body else []:
                pieces.append(f"{context}\n\n{part}")
        return pieces


@dataclass(frozen=True)
class NoChunking:
    kind: Literal["none"] = "none"

    def split(self, text: str) -> list[str]:
        return [text.strip()] if text.strip() else []


Chunking = FixedChunking | MarkdownChunking | NoChunking


def chunk_sections(sections: list[Section], chunking: Chunking, metadata: dict[str, Any]) -> list[Chunk]:
    """Chunks with per-chunk metadata: everything in ``metadata`` (source, name, collection, tags) plus part/page."""
    chunks: list[Chunk] = []
    for section in sections:
        for piece in chunking.split(section.text):
            meta = {**metadata, **section.metadata, "part": len(chunks) + 1}
            if section.page is not None:
                meta["page"] = section.page
            chunks.append(Chunk(piece, meta))
    return chunks
