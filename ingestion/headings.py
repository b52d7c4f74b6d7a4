"""Markdown ATX headings (``# Title``, ``## Section ##``), found in time linear in the text.

A regular expression such as ``^(#{1,6})\\s+(.+?)\\s*#*\\s*$`` backtracks cubically on a line like ``"# a"``,
thousands of spaces and ``"b"``: a 3.2 KB upload once held the GIL for 36 s. Here each line is looked at once with
string methods, and a line longer than ``MAX_HEADING_LINE`` characters is never a heading.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

MAX_HEADING_LINE = 1_000  # characters; a longer line is text, not a title


@dataclass(frozen=True)
class Heading:
    level: int  # 1 to 6
    title: str
    start: int  # where the heading line starts in the text
    end: int  # where it ends (before its line break)


def parse_heading(line: str) -> tuple[int, str] | None:
    """(level, title) when ``line`` is an ATX heading, else None.

    One to six ``#``, at least one whitespace character, then a non-empty title; a closing run of ``#`` is dropped
    when whitespace precedes it (``# C#`` keeps its title ``C#``, ``# Guide #`` is ``Guide``).
    """
    if not line.startswith("#") or len(line) > MAX_HEADING_LINE:
        return None
    rest = line.lstrip("#")
    level = len(line) - len(rest)
    if level > 6 or not rest[:1].isspace():
        return None
    title = rest.strip()
    unclosed = title.rstrip("#")
    if unclosed != title and (not unclosed or unclosed[-1].isspace()):
        title = unclosed.rstrip()
    return (level, title) if title else None


def headings(text: str) -> Iterator[Heading]:
    """Every heading of a markdown text, in order."""
    start = 0
    size = len(text)
    while start < size:
        end = text.find("\n", start)
        if end == -1:
            end = size
        if text.startswith("#", start) and end - start <= MAX_HEADING_LINE:
            found = parse_heading(text[start:end])
            if found is not None:
                yield Heading(found[0], found[1], start, end)
        start = end + 1


def first_title(text: str) -> str | None:
    """The title of the first level-1 heading, if any."""
    return next((h.title for h in headings(text) if h.level == 1), None)
