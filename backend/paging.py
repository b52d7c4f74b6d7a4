"""Paged lists, one way everywhere: ``limit`` items after an opaque ``cursor``, newest or lowest key first.

A page reads ``limit + 1`` rows in SQL, with every filter (access rules included) in the query itself, so a page
is full whenever more items exist; the extra row only says that a next page exists. The cursor is the last key
of the page, base64url-encoded: opaque to clients, and stable while items are added or removed.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.errors import BadRequest

DEFAULT_LIMIT = 100
MAX_LIMIT = 500

ItemT = TypeVar("ItemT")


def encode_cursor(last_key: str | int) -> str:
    return base64.urlsafe_b64encode(str(last_key).encode()).decode()


def decode_cursor(cursor: str | None) -> str | None:
    """The key a cursor stands for; 400 when it is not one this server made."""
    if not cursor:
        return None
    try:
        return base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise BadRequest("invalid cursor: pass the next_cursor of the previous page unchanged") from exc


@dataclass(frozen=True, slots=True)
class PageParams:
    """What a client asks of a list (the ``PageParams`` dependency in backend/api/deps.py builds it)."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    @property
    def after(self) -> str | None:
        return decode_cursor(self.cursor)


class Page(BaseModel, Generic[ItemT]):
    """A page of a list; subclass it per item type (``class ModelPage(Page[ModelPublic])``) for a named schema."""

    data: list[ItemT]
    next_cursor: str | None = Field(description="Pass as 'cursor' for the next page; null on the last page.")


def _after(key: sa.ColumnElement[Any], value: str, descending: bool) -> sa.ColumnElement[bool]:
    bound: Any = value
    if key.type.python_type is int:
        try:
            bound = int(value)
        except ValueError as exc:
            raise BadRequest("invalid cursor: pass the next_cursor of the previous page unchanged") from exc
    return key < bound if descending else key > bound


async def read_page(
    engine: AsyncEngine,
    query: sa.Select[Any],
    key: sa.ColumnElement[Any],
    params: PageParams,
    *,
    descending: bool = False,
) -> tuple[list[RowMapping], str | None]:
    """One page of ``query`` (which holds every filter) ordered by the unique ``key``: the rows and the cursor of
    the next page, None on the last one."""
    query = query.order_by(key.desc() if descending else key).limit(params.limit + 1)
    if (after := params.after) is not None:
        query = query.where(_after(key, after, descending))
    async with engine.connect() as conn:
        rows = [r._mapping for r in (await conn.execute(query)).all()]
    if len(rows) <= params.limit:
        return rows, None
    rows = rows[: params.limit]
    return rows, encode_cursor(rows[-1][key.name])
