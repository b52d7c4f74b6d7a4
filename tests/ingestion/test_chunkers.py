"""Chunking strategies and per-chunk metadata."""

from __future__ import annotations

import itertools

import pytest

from ingestion.chunkers import FixedChunking, MarkdownChunking, NoChunking, chunk_sections
from ingestion.document import IngestionError, Section

WORDS = " ".join(f"word{i}" for i in range(600))


def test_fixed_chunks_respect_size_overlap_and_words() -> None:
    pieces = FixedChunking(size=200, overlap=40).split(WORDS)
    assert all(len(p) <= 200 for p in pieces)
    assert all(p.split()[0].startswith("word") and p.split()[-1].startswith("word") for p in pieces)  # no cut words
    for a, b in itertools.pairwise(pieces):
        assert a.split()[-1] in b  # the overlap carries context across the cut
    rebuilt = set(" ".join(pieces).split())
    assert rebuilt == set(WORDS.split())  # nothing lost


@pytest.mark.parametrize(("size", "overlap"), [(99, 0), (10_001, 0), (200, 101), (200, -1)])
def test_fixed_chunking_bounds(size: int, overlap: int) -> None:
    with pytest.raises(IngestionError):
        FixedChunking(size=size, overlap=overlap)


def test_default_is_512_with_51_overlap() -> None:
    assert (FixedChunking().size, FixedChunking().overlap) == (512, 51)


def test_markdown_sections_keep_their_header_trail() -> None:
    text = "Intro line.\n# Setup\nInstall it.\n## Ports\nUse 5432.\n# Backups\nRun pg_dump nightly.\n"
    pieces = MarkdownChunking(size=500).split(text)
    assert pieces == [
        "Intro line.",
        "Setup\n\nInstall it.",
        "Setup > Ports\n\nUse 5432.",
        "Backups\n\nRun pg_dump nightly.",
    ]


def test_none_and_metadata() -> None:
    sections = [Section("page one text", page=1), Section("page two text", page=2, metadata={"title": "T"})]
    chunks = chunk_sections(sections, NoChunking(), {"source": "s3://b/doc.pdf", "name": "doc.pdf", "tags": ["ops"]})
    assert [c.text for c in chunks] == ["page one text", "page two text"]
    assert chunks[0].metadata == {"source": "s3://b/doc.pdf", "name": "doc.pdf", "tags": ["ops"], "part": 1, "page": 1}
    assert chunks[1].metadata["part"] == 2 and chunks[1].metadata["title"] == "T"
