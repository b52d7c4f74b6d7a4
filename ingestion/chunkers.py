"""Chunking strategies: fixed characters (with overlap, preferring to cut at whitespace), tokens (tiktoken, with
overlap), markdown headers, none; ``chunking_from_spec`` builds one from its stored JSON form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import tiktoken

from ingestion import tokens
from ingestion.document import Chunk, IngestionError, Section
from ingestion.headings import headings


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
class TokenChunking:
    """Windows of at most ``size`` tokens over the text's token stream, consecutive windows sharing ``overlap`` tokens.

    The input is stripped, encoded as ordinary text (``<|endoftext|>`` in a document is just text), and cut into
    windows that tile the token stream: the first window, then each next one without its first ``overlap`` tokens,
    give back the whole stream. Each chunk is its window decoded, not stripped (stripping would break the tiling).

    A token can hold part of a multi-byte character, so window edges are only placed where a character starts and
    every chunk decodes to clean text. The shared part is exactly ``overlap`` tokens whenever some window end within
    ``size`` has a character start both there and ``overlap`` tokens earlier, which holds for ordinary text; when none
    has (say, text whose every character is two tokens, with an odd overlap) the next window starts at the nearest
    character start at or before the exact position. A chunk re-encoded on its own is also kept within ``size`` tokens.
    Chunks that decode to whitespace only are dropped.
    """

    size: int = 256
    overlap: int = 25
    encoding: str = "cl100k_base"
    kind: Literal["tokens"] = "tokens"

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 8192:
            raise IngestionError(f"chunk size must be between 16 and 8192 tokens, got {self.size}")
        if not 0 <= self.overlap <= self.size // 2:
            raise IngestionError(f"overlap must be between 0 and size/2 ({self.size // 2}) tokens, got {self.overlap}")
        tokens.encoding(self.encoding)  # an encoding that cannot be loaded offline fails here, not mid-ingestion

    def split_tokens(self, text: str) -> list[list[int]]:
        """The token windows behind ``split``."""
        enc = tokens.encoding(self.encoding)
        ids = enc.encode_ordinary(text.strip())
        # starts[k]: a character begins at token k (its first byte is no UTF-8 continuation byte); also at the end
        starts = [piece[0] & 0xC0 != 0x80 for piece in enc.decode_tokens_bytes(ids)] + [True]
        windows: list[list[int]] = []
        start = 0
        while start < len(ids):
            end = self._end(enc, ids, starts, start)
            windows.append(ids[start:end])
            if end == len(ids):
                break
            start = self._next_start(starts, start, end)
        return windows

    def split(self, text: str) -> list[str]:
        enc = tokens.encoding(self.encoding)
        pieces = (enc.decode(window) for window in self.split_tokens(text))
        return [piece for piece in pieces if piece.strip()]

    def _end(self, enc: tiktoken.Encoding, ids: list[int], starts: list[bool], start: int) -> int:
        """Where the window from ``start`` ends: as late as fits, preferring an end that allows the exact overlap."""
        last = min(start + self.size, len(ids))

        def fits(end: int) -> bool:
            return len(enc.encode_ordinary(enc.decode(ids[start:end]))) <= self.size

        exact = (
            end
            for end in range(last, start + self.overlap, -1)
            if starts[end] and (end == len(ids) or starts[end - self.overlap]) and fits(end)
        )
        found = next(exact, None)
        if found is None:
            found = next((end for end in range(last, start, -1) if starts[end] and fits(end)), None)
        # a character is at most 4 tokens and size >= 16, so a clean end always exists; guard progress regardless
        return found if found is not None else last

    def _next_start(self, starts: list[bool], start: int, end: int) -> int:
        """``overlap`` tokens before ``end``, moved back to a character start (forward if that would not advance)."""
        for nxt in range(end - self.overlap, start, -1):
            if starts[nxt]:
                return nxt
        return next(nxt for nxt in range(end - self.overlap + 1, end + 1) if starts[nxt])


@dataclass(frozen=True)
class MarkdownChunking:
    """One chunk per section under a header, each split further by size when long; headers kept as context."""

    size: int = 2000
    kind: Literal["markdown"] = "markdown"

    def __post_init__(self) -> None:
        FixedChunking(self.size, 0)  # long sections are split by FixedChunking: same size bounds, checked up front

    def split(self, text: str) -> list[str]:
        return [piece for _, piece in self.split_sections(text)]

    def split_sections(self, text: str) -> list[tuple[str, str]]:
        """(heading trail, chunk) pairs; the trail ("Guide > Install") is empty before the first heading."""
        marks = list(headings(text))
        if not marks:
            return [("", piece) for piece in FixedChunking(self.size, 0).split(text)]
        pieces: list[tuple[str, str]] = []
        preamble = text[: marks[0].start].strip()
        if preamble:
            pieces += [("", piece) for piece in FixedChunking(self.size, 0).split(preamble)]
        trail: list[tuple[int, str]] = []
        for i, mark in enumerate(marks):
            level, title = mark.level, mark.title
            trail = [(lvl, t) for lvl, t in trail if lvl < level] + [(level, title)]
            body = text[mark.end : marks[i + 1].start if i + 1 < len(marks) else len(text)].strip()
            context = " > ".join(t for _, t in trail)
            for part in FixedChunking(self.size, 0).split(body) if body else []:
                pieces.append((context, f"{context}\n\n{part}"))
        return pieces


@dataclass(frozen=True)
class NoChunking:
    kind: Literal["none"] = "none"

    def split(self, text: str) -> list[str]:
        return [text.strip()] if text.strip() else []


Chunking = FixedChunking | TokenChunking | MarkdownChunking | NoChunking

_SPEC_KEYS: dict[str, tuple[str, ...]] = {
    "fixed": ("size", "overlap"),
    "tokens": ("size", "overlap", "encoding"),
    "markdown": ("size",),
    "none": (),
}


def chunking_from_spec(spec: Mapping[str, Any]) -> Chunking:
    """A strategy from its JSON form, e.g. ``{"strategy": "tokens", "size": 256, "overlap": 25}``.

    ``strategy`` is one of fixed (characters, default 512/51), tokens (tiktoken tokens, default 256/25, optional
    ``encoding``), markdown (optional ``size``, default 2000) or none. Keys a strategy does not use, non-integer
    numbers and out-of-range values raise IngestionError; a key set to null means its default.
    """
    if not isinstance(spec, Mapping):
        raise IngestionError(f"chunking must be an object with a strategy, got {type(spec).__name__}")
    strategy = spec.get("strategy")
    if strategy not in _SPEC_KEYS:
        raise IngestionError(f"unknown chunking strategy {strategy!r}; use one of {', '.join(_SPEC_KEYS)}")
    allowed = _SPEC_KEYS[strategy]
    given = {key: value for key, value in spec.items() if key != "strategy" and value is not None}
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise IngestionError(
            f"chunking strategy {strategy!r} does not take {', '.join(extra)}"
            + (f" (it takes {', '.join(allowed)})" if allowed else "")
        )
    for key in ("size", "overlap"):
        value = given.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise IngestionError(f"chunking {key} must be a whole number, got {value!r}")
    if "encoding" in given and not isinstance(given["encoding"], str):
        raise IngestionError(f"chunking encoding must be a name such as 'cl100k_base', got {given['encoding']!r}")
    if strategy == "fixed":
        return FixedChunking(**given)
    if strategy == "tokens":
        return TokenChunking(**given)
    if strategy == "markdown":
        return MarkdownChunking(**given)
    return NoChunking()


def chunk_sections(sections: list[Section], chunking: Chunking, metadata: dict[str, Any]) -> list[Chunk]:
    """Chunks with per-chunk metadata: everything in ``metadata`` (source, name, collection, tags) plus part/page.

    When a section has a title (an HTML ``<title>``, a markdown file's ``# heading``), every chunk that does not
    already begin with it gets it as a first line: a chunk from the middle of a page then still says what the page
    is about, to the embedding, to full-text search and to the model reading it. For fixed and token chunking the
    line counts against the chunk size (a title longer than a quarter of it is left out); markdown chunks, which
    carry their header trail the same way, are not shortened for it, and record that trail as ``section`` (what an
    answer citing the chunk shows). A section whose loader recorded ``headings`` (HTML's h1-h4) gives each chunk the
    trail of headings in force where the chunk starts as its ``section``; the chunk's text is not changed by it.
    """
    chunks: list[Chunk] = []
    for section in sections:
        extra = {k: v for k, v in section.metadata.items() if k != "headings"}
        title = " ".join(str(section.metadata.get("title") or "").split())
        strategy = _making_room(chunking, title) if title else None
        split = strategy or chunking
        pairs = (
            split.split_sections(section.text)
            if isinstance(split, MarkdownChunking)
            else _with_trails(section, split.split(section.text))
        )
        for trail, piece in pairs:
            meta = {**metadata, **extra, "part": len(chunks) + 1}
            if trail:
                meta["section"] = trail
            if section.page is not None:
                meta["page"] = section.page
            text = piece if strategy is None or _starts_with(piece, title) else f"{title}\n{piece}"
            chunks.append(Chunk(text, meta))
    return chunks


def _with_trails(section: Section, pieces: list[str]) -> list[tuple[str, str]]:
    """(heading trail, piece) pairs: each piece's trail is the headings in force where it starts (a loader's
    ``headings``: [offset, level, text], in text order), "" without headings. Pieces are the text's own, in order,
    so each is found after the previous one's start."""
    marks = section.metadata.get("headings") or []
    if not marks:
        return [("", piece) for piece in pieces]
    out: list[tuple[str, str]] = []
    cursor, next_mark = 0, 0
    trail: list[tuple[int, str]] = []
    for piece in pieces:
        core = piece.strip()[:64]
        found = section.text.find(core, cursor) if core else -1
        start = found if found != -1 else cursor
        cursor = start + 1
        while next_mark < len(marks) and int(marks[next_mark][0]) <= start:
            _, level, heading = marks[next_mark]
            trail = [(lvl, t) for lvl, t in trail if lvl < int(level)] + [(int(level), str(heading))]
            next_mark += 1
        out.append((" > ".join(t for _, t in trail), piece))
    return out


def _starts_with(piece: str, title: str) -> bool:
    return piece.lstrip().lstrip("#").lstrip().startswith(title)


def _making_room(chunking: Chunking, title: str) -> Chunking | None:
    """The strategy that leaves room for a ``title`` line in each chunk, or None when the title does not fit."""
    if isinstance(chunking, NoChunking | MarkdownChunking):
        return chunking
    line = f"{title}\n"
    cost = (
        len(line)
        if isinstance(chunking, FixedChunking)
        else len(tokens.encoding(chunking.encoding).encode_ordinary(line))
    )
    if cost > chunking.size // 4:
        return None
    size = chunking.size - cost
    try:
        return replace(chunking, size=size, overlap=min(chunking.overlap, size // 2))
    except IngestionError:  # below the strategy's smallest size
        return None
