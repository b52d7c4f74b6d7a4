"""Hostile inputs to the loaders, chunkers and parser pool: linear-time headings, decompression bombs, time limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ingestion.chunkers import MarkdownChunking
from ingestion.document import IngestionError
from ingestion.headings import MAX_HEADING_LINE, first_title, headings, parse_heading
from ingestion.loaders import load
from ingestion.loaders.office import MAX_MEMBER
from ingestion.parser_pool import ParserPool
from tests.ingestion.hostile_files import HOSTILE_MD, docx_bomb, pdf_bomb

T = TypeVar("T")
FAST = 0.5  # seconds: generous for work that is linear in a few hundred kilobytes


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


@pytest.mark.parametrize(
    "line",
    [
        "# a" + " " * 3200 + "b",
        "#" + " " * 5000 + "#" * 5000,
        "## x" + " #" * 5000,
        "# " + "\t " * 4000 + "x" + " " * 4000 + "#",
    ],
)
def test_headings_take_linear_time_on_pathological_lines(line: str) -> None:
    (_, took) = timed(lambda: list(headings((line + "\n") * 100)))
    assert took < FAST
    (_, took) = timed(parse_heading, line)
    assert took < FAST


def test_headings_follow_atx_rules() -> None:
    assert parse_heading("# Install guide #") == (1, "Install guide")
    assert parse_heading("## C#") == (2, "C#")
    assert parse_heading("### Title ###   ") == (3, "Title")
    assert parse_heading("#NoSpace") is None
    assert parse_heading("####### seven") is None
    assert parse_heading("# ") is None
    assert parse_heading("# " + "x" * MAX_HEADING_LINE) is None  # an overlong line is text, not a title
    text = "intro\n# One\nbody\n## Two ##\r\nmore\n"
    assert [(h.level, h.title, text[h.start : h.end].rstrip("\r")) for h in headings(text)] == [
        (1, "One", "# One"),
        (2, "Two", "## Two ##"),
    ]
    assert first_title("## Sub\n# Main\n") == "Main"


def test_the_hostile_markdown_file_loads_and_chunks_at_once() -> None:
    (sections, took) = timed(load, "hostile.md", HOSTILE_MD)
    assert took < FAST and sections[0].metadata == {}  # a 3,204-character line is no title
    (sections, took) = timed(load, "fine.md", b"# a" + b" " * 900 + b"b")
    assert took < FAST and sections[0].metadata["title"] == "a" + " " * 900 + "b"
    (pieces, took) = timed(MarkdownChunking(2000).split, HOSTILE_MD.decode() * 50)
    assert took < FAST and pieces


def test_a_pdf_decompression_bomb_fails_with_a_reason() -> None:
    data = pdf_bomb()
    start = time.perf_counter()
    with pytest.raises(IngestionError) as error:
        load("bomb.pdf", data)
    assert "decompression limit" in str(error.value) and time.perf_counter() - start < 30


def test_a_docx_part_inflating_past_the_cap_is_refused_before_parsing() -> None:
    data = docx_bomb()
    assert len(data) < 4 * 1024 * 1024
    with pytest.raises(IngestionError) as error:
        load("bomb.docx", data)
    assert "word/document.xml" in str(error.value) and f"limit {MAX_MEMBER} bytes per part" in str(error.value)


def test_the_parser_pool_enforces_its_time_limit_and_recovers(tmp_path: Path) -> None:
    slow = tmp_path / "slow.txt"
    slow.write_text("lorem ipsum dolor sit amet, consectetur adipiscing elit " * 200_000)  # ~11 MB of tokens
    hostile = tmp_path / "hostile.md"
    hostile.write_bytes(HOSTILE_MD)

    async def run() -> None:
        pool = ParserPool(workers=1, timeout=1.0)
        try:
            with pytest.raises(IngestionError, match="time limit of 1 s"):
                await pool.parse(
                    str(slow), "slow.txt", {"strategy": "tokens", "size": 16, "overlap": 0}, {}, 50_000_000
                )
            # the overrunning worker was killed and replaced: the pool goes on
            chunks = await pool.parse(str(hostile), "hostile.md", {"strategy": "markdown"}, {"k": 1}, 10_000)
            assert chunks and chunks[0].metadata["k"] == 1
            with pytest.raises(IngestionError, match="over the limit of 100 bytes"):
                await pool.parse(str(hostile), "hostile.md", {"strategy": "tokens"}, {}, 100)
        finally:
            pool.close()

    asyncio.run(run())
