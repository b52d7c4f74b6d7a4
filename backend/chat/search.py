"""Searching sessions: each session's ``search`` column holds the full-text words of its title and messages.

Why a vector per session rather than an index on the messages: a list is one owner's sessions in order of
activity. A word most sessions contain is then found by reading the owner's newest sessions until the page is full
(each a binary search in a sorted vector), and a rare word by the GIN index, whoever owns the rest of the
table; a trigram or full-text index on the messages themselves finds every matching message of every user first
(measured: 250 ms for a common word over 40,000 messages, docs/benchmarks.md "Chat").

Matching: every word of the query, as a word prefix (``quo`` finds "quokka"), case-insensitive, in the title or any
message; or the query as a substring of the title (so "100%" finds "100% sure"). Words are the ``simple`` text
search configuration's (no stemming: any language). Bounds, so a vector never nears PostgreSQL's 1 MB: each text
added contributes its first ``TEXT_CHARS`` characters; once a vector is ``VECTOR_BYTES`` large, further messages
are not added (their session is still found by its earlier words).
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from backend.db import tables

S = tables.chat_sessions
M = tables.chat_messages
TEXT_CHARS = 100_000  # of one message (or title) added to a session's vector
REBUILD_CHARS = 200_000  # of a whole session's messages when its vector is rebuilt
VECTOR_BYTES = 400_000
SIMPLE: sa.ColumnElement[Any] = sa.literal_column("'simple'::regconfig")
WORD = re.compile(r"[^\W_]+")


def words_of(text: Any, chars: int = TEXT_CHARS) -> sa.ColumnElement[Any]:
    return sa.func.to_tsvector(SIMPLE, sa.func.left(text, chars))


def appended(text: Any) -> sa.ColumnElement[Any]:
    """The session's vector with ``text``'s words added (unchanged once it is ``VECTOR_BYTES`` large)."""
    grown = sa.func.strip(S.c.search.op("||")(words_of(text)))
    return sa.case((sa.func.pg_column_size(S.c.search) < VECTOR_BYTES, grown), else_=S.c.search)


def rebuilt(session_id: Any, title: Any = S.c.title) -> sa.ColumnElement[Any]:
    """The session's vector made again from its title and messages (after a rename, or a message taken back)."""
    everything = (
        sa.select(sa.func.string_agg(M.c.content, sa.literal(" ")))
        .where(M.c.session_id == session_id)
        .scalar_subquery()
    )
    messages = sa.func.coalesce(words_of(everything, REBUILD_CHARS), sa.cast("", S.c.search.type))
    return sa.func.strip(words_of(title).op("||")(messages))


def prefix_query(text: str) -> str | None:
    """A ``to_tsquery`` string matching every word of ``text`` as a prefix; None when it has no words."""
    words = WORD.findall(text.lower())[:32]
    return " & ".join(f"'{w}':*" for w in words) if words else None


def like_pattern(term: str) -> str:
    """``term`` as a substring pattern for ILIKE, its own wildcards taken literally."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def matches(text: str) -> sa.ColumnElement[bool]:
    """The condition, its values written into the SQL (``literal_execute``): PostgreSQL plans each search for its
    own words. With bound values a prepared statement soon gets one generic plan, which for a word in most sessions
    went through the indexes (55 ms) where reading the newest sessions takes 0.1 ms."""
    in_title = S.c.title.ilike(sa.bindparam("title_pattern", like_pattern(text), literal_execute=True), escape="\\")
    query = prefix_query(text)
    if query is None:
        return in_title
    words = sa.func.to_tsquery(SIMPLE, sa.bindparam("words", query, literal_execute=True))
    return sa.or_(S.c.search.op("@@", return_type=sa.Boolean)(words), in_title)
