"""Originals of ingested files, content-addressed (sha256) and stored in parts of ``PART_BYTES``.

A file goes in from a file on disk and comes out to a file on disk or as a stream of parts, so neither an upload,
an ingestion nor a download ever holds a whole original in the serving process's memory. A blob's parts are
written in the same transaction as its ``rag_blobs`` row; deleting that row deletes its parts (ON DELETE CASCADE).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db import tables

B, P = tables.rag_blobs, tables.rag_blob_parts
PART_BYTES = 1024 * 1024
COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class StagedFile:
    """A file on local disk with its size and sha256, ready to be stored or parsed."""

    name: str
    path: Path
    size: int
    sha256: str


def hash_file(path: Path) -> tuple[int, str]:
    """(size, sha256) of a file, read in blocks (hashlib releases the GIL on large blocks)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while block := file.read(COPY_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


async def store(conn: AsyncConnection, staged: StagedFile) -> None:
    """Stores the file as a blob in the caller's transaction, unless identical content is stored already."""
    created = await conn.scalar(
        insert(B).values(sha256=staged.sha256, size=staged.size).on_conflict_do_nothing().returning(B.c.sha256)
    )
    if created is None:
        return  # the same content, stored (or being stored, and then we waited for it) by someone else
    with staged.path.open("rb") as file:
        seq = 0
        while True:
            data = await asyncio.to_thread(file.read, PART_BYTES)
            if not data and seq:
                break
            await conn.execute(P.insert().values(sha256=staged.sha256, seq=seq, data=data))
            seq += 1
            if len(data) < PART_BYTES:
                break


async def size_of(engine: AsyncEngine, sha256: str) -> int | None:
    async with engine.connect() as conn:
        size: int | None = await conn.scalar(sa.select(B.c.size).where(B.c.sha256 == sha256))
    return size


async def parts(engine: AsyncEngine, sha256: str) -> AsyncIterator[bytes]:
    """The blob's content, one part at a time (one short query per part: no connection is held between them)."""
    seq = 0
    while True:
        async with engine.connect() as conn:
            data = await conn.scalar(sa.select(P.c.data).where(P.c.sha256 == sha256, P.c.seq == seq))
        if data is None:
            return
        yield bytes(data)
        seq += 1


async def copy_to(engine: AsyncEngine, sha256: str, file: BinaryIO) -> int:
    """Writes the blob into ``file``; the number of bytes written."""
    written = 0
    async for data in parts(engine, sha256):
        await asyncio.to_thread(file.write, data)
        written += len(data)
    return written
