"""Chunking strategies and per-chunk metadata."""

from __future__ import annotations

import itertools

import pytest

from ingestion.chunkers import FixedChunking, MarkdownChunking, NoChunking, TokenChunking, chunk_sections
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
    assert [c.text for c in chunks] == ["page one text", "T\npage two text"]  # a titled section leads with it
    assert chunks[0].metadata == {"source": "s3://b/doc.pdf", "name": "doc.pdf", "tags": ["ops"], "part": 1, "page": 1}
    assert chunks[1].metadata["part"] == 2 and chunks[1].metadata["title"] == "T"


def test_every_chunk_of_a_titled_section_leads_with_the_title_within_the_size() -> None:
    title = "CREATE INDEX"
    chunks = chunk_sections([Section(WORDS, metadata={"title": title})], FixedChunking(200, 20), {"name": "x.html"})
    assert len(chunks) > 3
    for chunk in chunks:
        first, body = chunk.text.split("\n", 1)
        assert first == title
        assert body.split()[0].startswith("word")
        assert len(chunk.text) <= 200  # the title line counts against the size
    assert set(" ".join(c.text.split("\n", 1)[1] for c in chunks).split()) == set(WORDS.split())  # nothing lost


def test_a_chunk_that_already_starts_with_the_title_is_left_alone() -> None:
    text = "# Backups\n\nRun pg_dump nightly. " + "Keep the dumps off the database host. " * 20
    chunks = chunk_sections([Section(text, metadata={"title": "Backups"})], FixedChunking(200, 0), {})
    assert chunks[0].text.startswith("# Backups\n")  # the page's own heading: not repeated
    assert all(c.text.startswith("Backups\n") for c in chunks[1:])
    headed = chunk_sections([Section("Backups\nRun pg_dump.", metadata={"title": " Backups "})], NoChunking(), {})
    assert [c.text for c in headed] == ["Backups\nRun pg_dump."]


def test_markdown_chunks_keep_their_header_trail_instead_of_a_second_title() -> None:
    text = "# Guide\nIntro.\n## Setup\nInstall it.\n"
    chunks = chunk_sections([Section(text, metadata={"title": "Guide"})], MarkdownChunking(500), {})
    assert [c.text for c in chunks] == ["Guide\n\nIntro.", "Guide > Setup\n\nInstall it."]


def test_markdown_chunks_record_their_heading_trail_as_section() -> None:
    """What a citation shows as the section: the trail of headings above the chunk; none before the first one."""
    text = "Preface.\n# Guide\nIntro.\n## Setup\n### Linux\nInstall it.\n## Use\nRun it.\n"
    chunks = chunk_sections([Section(text, metadata={"title": "Guide"})], MarkdownChunking(500), {"source": "g.md"})
    assert [c.metadata.get("section") for c in chunks] == [None, "Guide", "Guide > Setup > Linux", "Guide > Use"]
    assert all(c.metadata["source"] == "g.md" and c.metadata["title"] == "Guide" for c in chunks)
    fixed = chunk_sections([Section(text, metadata={"title": "Guide"})], FixedChunking(500, 0), {})
    assert all("section" not in c.metadata for c in fixed)  # only markdown chunking knows the trail


def test_a_title_too_long_for_the_chunk_is_left_out() -> None:
    title = "A very long page title " * 3  # over a quarter of 200 characters
    chunks = chunk_sections([Section(WORDS, metadata={"title": title})], FixedChunking(200, 20), {})
    assert all(c.text.startswith("word") for c in chunks)
    assert all(c.metadata["title"] == title for c in chunks)


def test_token_chunks_with_a_title_stay_within_their_token_size() -> None:
    from ingestion import tokens

    enc = tokens.encoding("cl100k_base")
    chunks = chunk_sections([Section(WORDS, metadata={"title": "Numeric Types"})], TokenChunking(64, 8), {})
    assert len(chunks) > 3
    assert all(c.text.startswith("Numeric Types\n") for c in chunks)
    assert all(len(enc.encode_ordinary(c.text)) <= 64 for c in chunks)


HTML_MANUAL = (
    b"<html><head><title>Index Types</title></head><body><h1>Index Types</h1><p>"
    + b"PostgreSQL provides several index types. " * 20
    + b"</p><h2>B-Tree</h2><p>"
    + b"B-trees can handle equality and range queries on data that can be sorted. " * 20
    + b"</p><h3>Deduplication</h3><p>"
    + b"Duplicates are stored once per leaf page. " * 20
    + b"</p><h2>Hash</h2><p>"
    + b"Hash indexes store a 32-bit hash code of the indexed value. " * 20
    + b"</p></body></html>"
)


def test_html_chunks_carry_their_heading_trail_as_section() -> None:
    from ingestion.loaders.text import load_html

    chunks = chunk_sections(load_html(HTML_MANUAL, "indexes.html"), TokenChunking(64, 8), {"source": "s"})
    trails = [c.metadata.get("section") for c in chunks]
    assert trails[0] == "Index Types"
    assert "Index Types > B-Tree" in trails and "Index Types > B-Tree > Deduplication" in trails
    assert trails[-1] == "Index Types > Hash"  # a level-2 heading closes the level-3 one before it
    assert trails == sorted(trails, key=trails.index)  # in text order, each trail once contiguous
    for chunk in chunks:
        assert "headings" not in chunk.metadata  # the loader's offsets stay out of the stored metadata
        # the text (stored, embedded, full-text indexed) is unchanged: title line, then the chunk's own; the trail
        # as embedding context ranked worse on both manuals (docs/rag-quality.md)
        assert chunk.text.startswith("Index Types\n") and "B-Tree >" not in chunk.text
    deduplication = next(c for c in chunks if c.metadata["section"].endswith("Deduplication"))
    assert "Duplicates are stored once" in deduplication.text


def test_a_pages_own_private_use_characters_make_no_heading() -> None:
    from ingestion.loaders.text import load_html

    page = '<html><head><meta charset="utf-8"></head><body><h2>Real</h2><p>\ue001 not a heading</p><pre>\ue003also not</pre></body></html>'
    [section] = load_html(page.encode(), "p.html")
    assert section.metadata["headings"] == [[0, 2, "Real"]]
    assert section.text == "Real\nnot a heading\nalso not"
