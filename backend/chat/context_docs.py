"""Documents in context (not RAG): files uploaded into a session whose text joins every prompt of that session,
cut to fit the model's context window, with a notice telling the user what was cut.

Uploads go the way RAG uploads go (backend/rag/uploads.py): streamed to temporary files under the caps (413), the
type checked from the part's headers (400), then parsed in the parser processes under their time limit
(ingestion/parser_pool.py), never in the serving process. Only the extracted text is kept (the file is not), with
its token count, so a turn decides what fits without reading or counting any text. A file that cannot be parsed
refuses the whole upload (400 naming it): nothing of it is stored. A name already in the session is replaced.

``context_for`` is what the chat calls when it builds a prompt: the documents share the token budget it is given
fairly (``allocate``: a document smaller than its share keeps all of it, the rest is split evenly among the larger
ones), each cut at a token boundary, and every cut or left-out document is named in a ``ContextNotice``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.principal import Principal
from backend.chat import tokens
from backend.chat.context_schemas import ContextDocumentPage, ContextDocumentPublic, ContextNotice
from backend.chat.store import ChatStore
from backend.db import tables
from backend.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from backend.paging import PageParams, read_page
from backend.rag.blobs import StagedFile
from backend.registry.schemas import ModelRoute
from ingestion.document import IngestionError
from ingestion.loaders import LOADERS
from ingestion.parser_pool import ParserPool
from ingestion.parsing import CODE_SUFFIXES

D = tables.chat_context_documents
S = tables.chat_sessions
SUPPORTED = frozenset(LOADERS) | CODE_SUFFIXES
PREAMBLE = (
    "The user added these documents to the conversation; their text follows. "
    "Where a document was cut to fit, it ends with a line saying so.\n\n"
)
CUT_MARK = "\n[... the rest of this document was cut to fit the context window ...]"
MIN_KEPT_TOKENS = 16  # a document with less room than this is left out rather than cut to a few words


def new_document_id() -> str:
    """Time-ordered (paging by id lists documents in upload order)."""
    return f"cdoc_{time.time_ns():016x}{secrets.token_hex(4)}"


def check_type(name: str) -> None:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED:
        raise BadRequest(
            f"{name}: unsupported file type '{suffix or '(none)'}' for a document in context; upload text, "
            "markdown, PDF, Word (.docx), HTML, CSV, JSON, YAML, XML or a source code file (.py, .js, .java, ...)"
        )


def storable(text: str) -> str:
    """Extracted text as PostgreSQL can keep it: no NUL characters, no unpaired surrogates."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def context_window(route: ModelRoute | None, default: int) -> int:
    return route.context_window if route is not None and route.context_window else default


def allocate(sizes: Sequence[int], budget: int) -> list[int]:
    """Tokens each document may keep: the budget shared fairly (smallest first, each taking at most an even share
    of what is left), so small documents stay whole and large ones are cut alike."""
    kept = [0] * len(sizes)
    left = max(budget, 0)
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    for position, i in enumerate(order):
        share = left // (len(sizes) - position)
        kept[i] = min(sizes[i], share)
        left -= kept[i]
    return kept


def _wrapper(name: str) -> tuple[str, str]:
    quoted = name.replace('"', "'")
    return f'<document name="{quoted}">\n', "\n</document>\n\n"


def _notice(row: Any, kept: int) -> ContextNotice:
    total = int(row["tokens"])
    if kept == 0:
        message = f"{row['name']}: left out; there was no room for it in the model's context window"
    else:
        message = (
            f"{row['name']}: only the first {kept:,} of its {total:,} tokens ({100 * kept // max(total, 1)}%) "
            "were used, to fit the model's context window"
        )
    return ContextNotice(
        document_id=row["id"], name=row["name"], kept_tokens=kept, total_tokens=total, omitted=kept == 0,
        message=message,
    )  # fmt: skip


class ContextDocuments:
    def __init__(
        self,
        engine: AsyncEngine,
        store: ChatStore,
        parser: ParserPool,
        *,
        max_file_bytes: int,
        max_documents: int,
        max_chars: int,
        default_window: int,
    ) -> None:
        self.engine = engine
        self.store = store
        self.parser = parser
        self.max_file_bytes = max_file_bytes
        self.max_documents = max_documents
        self.max_chars = max_chars
        self.default_window = default_window

    async def check_session(self, principal: Principal, session_id: str) -> None:
        """404 unless the session is the caller's (before an upload's body is read)."""
        await self.store.session(principal.username, session_id)

    # --- upload, list, get, delete ------------------------------------------------------------------------------
    async def upload(
        self, principal: Principal, session_id: str, files: list[StagedFile]
    ) -> list[ContextDocumentPublic]:
        if not files:
            raise BadRequest("send at least one file in a 'files' part")
        texts = await asyncio.gather(*(self._extract(f) for f in files), return_exceptions=True)
        for staged, text in zip(files, texts, strict=True):
            if isinstance(text, IngestionError):
                raise BadRequest(str(text))
            if isinstance(text, BaseException):
                raise text
            if len(text) > self.max_chars:
                raise PayloadTooLarge(
                    f"{staged.name}: {len(text):,} characters of text, over the limit of {self.max_chars:,} "
                    "for a document in context"
                )
        counts = await asyncio.gather(*(tokens.count_async(str(t)) for t in texts))
        names = [f.name for f in files]
        async with self.engine.begin() as conn:
            await self.store.session(principal.username, session_id, conn)
            # One upload at a time per session: the count below then holds until this one commits.
            await conn.execute(sa.select(S.c.id).where(S.c.id == session_id).with_for_update())
            await conn.execute(D.delete().where(D.c.session_id == session_id, D.c.name.in_(names)))
            held_query = sa.select(sa.func.count()).select_from(D).where(D.c.session_id == session_id)
            held = (await conn.execute(held_query)).scalar_one()
            if held + len(files) > self.max_documents:
                raise Conflict(
                    f"a session holds at most {self.max_documents} documents; it has {held} and this upload adds "
                    f"{len(files)}: delete some first"
                )
            rows = [
                {
                    "id": new_document_id(),
                    "session_id": session_id,
                    "owner": principal.username,
                    "name": staged.name,
                    "size_bytes": staged.size,
                    "sha256": staged.sha256,
                    "text": text,
                    "chars": len(str(text)),
                    "tokens": count,
                }
                for staged, text, count in zip(files, texts, counts, strict=True)
            ]
            inserted = (await conn.execute(D.insert().returning(*_public_columns()), rows)).all()
            await conn.execute(S.update().where(S.c.id == session_id).values(context_documents=held + len(files)))
        return [ContextDocumentPublic.model_validate(r._mapping) for r in inserted]

    async def _extract(self, staged: StagedFile) -> str:
        text = await self.parser.extract(str(staged.path), staged.name, self.max_file_bytes)
        return storable(text)

    async def page(self, principal: Principal, session_id: str, params: PageParams) -> ContextDocumentPage:
        """Oldest first (the order they join the prompt in)."""
        await self.check_session(principal, session_id)
        query = sa.select(*_public_columns()).where(D.c.session_id == session_id, D.c.owner == principal.username)
        rows, next_cursor = await read_page(self.engine, query, D.c.id, params)
        return ContextDocumentPage(
            data=[ContextDocumentPublic.model_validate(r) for r in rows], next_cursor=next_cursor
        )

    async def _row(self, principal: Principal, session_id: str, document_id: str, *columns: Any) -> Any:
        query = sa.select(*(columns or _public_columns())).where(
            D.c.id == document_id, D.c.session_id == session_id, D.c.owner == principal.username
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            await self.check_session(principal, session_id)  # the session's own 404 comes first
            raise NotFound(f"document '{document_id}' not found in session '{session_id}'")
        return row._mapping

    async def get(self, principal: Principal, session_id: str, document_id: str) -> ContextDocumentPublic:
        return ContextDocumentPublic.model_validate(await self._row(principal, session_id, document_id))

    async def delete(self, principal: Principal, session_id: str, document_id: str) -> None:
        mine = (D.c.id == document_id, D.c.session_id == session_id, D.c.owner == principal.username)
        async with self.engine.begin() as conn:
            gone = (await conn.execute(D.delete().where(*mine))).rowcount
            if gone:
                count = sa.select(sa.func.count()).select_from(D).where(D.c.session_id == session_id).scalar_subquery()
                await conn.execute(S.update().where(S.c.id == session_id).values(context_documents=count))
        if not gone:
            await self.check_session(principal, session_id)
            raise NotFound(f"document '{document_id}' not found in session '{session_id}'")

    async def exported(self, session_id: str) -> list[Any]:
        """Every document of a session (the caller checked it is theirs), with its text, oldest first: for export."""
        query = sa.select(D).where(D.c.session_id == session_id).order_by(D.c.id)
        async with self.engine.connect() as conn:
            return [r._mapping for r in (await conn.execute(query)).all()]

    # --- for summaries ------------------------------------------------------------------------------------------
    async def text_of(self, principal: Principal, session_id: str, document_id: str) -> str:
        """A document's text."""
        row = await self._row(principal, session_id, document_id, D.c.text)
        return str(row["text"])

    async def save_summary(
        self, principal: Principal, session_id: str, document_id: str, summary: str, model: str
    ) -> ContextDocumentPublic:
        values = {"summary": storable(summary), "summary_model": model, "summarized_at": datetime.now(UTC)}
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    D.update()
                    .where(D.c.id == document_id, D.c.session_id == session_id, D.c.owner == principal.username)
                    .values(**values)
                    .returning(*_public_columns())
                )
            ).first()
        if row is None:  # deleted while it was being summarised
            raise NotFound(f"document '{document_id}' not found in session '{session_id}'")
        return ContextDocumentPublic.model_validate(row._mapping)

    # --- into a prompt ------------------------------------------------------------------------------------------
    async def context_for(
        self, session_id: str, principal: Principal, model_route: ModelRoute | None, budget_tokens: int
    ) -> tuple[str, list[ContextNotice]]:
        """The session's documents as one text of at most ``budget_tokens`` tokens (never more than the model's
        context window), and a notice for each document cut or left out. ("", []) for a session without any."""
        meta = sa.select(D.c.id, D.c.name, D.c.tokens, D.c.chars).where(
            D.c.session_id == session_id, D.c.owner == principal.username
        )
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in (await conn.execute(meta.order_by(D.c.id))).all()]
        if not rows:
            return "", []
        budget = min(budget_tokens, context_window(model_route, self.default_window))
        framing = tokens.count(PREAMBLE) + sum(tokens.count("".join(_wrapper(r["name"]))) for r in rows)
        cut_cost = tokens.count(CUT_MARK)
        sizes = [int(r["tokens"]) for r in rows]
        kept = allocate(sizes, budget - framing - cut_cost * len(rows))
        kept = [k if k >= sizes[i] or k >= MIN_KEPT_TOKENS else 0 for i, k in enumerate(kept)]
        texts = await self._texts(rows, kept)
        parts: list[str] = []
        notices: list[ContextNotice] = []
        for row, keep, text in zip(rows, kept, texts, strict=True):
            if keep == 0:
                notices.append(_notice(row, 0))
                continue
            head, tail = _wrapper(row["name"])
            if keep < row["tokens"]:
                text = await tokens.truncate_async(text, keep)
                notices.append(_notice(row, min(keep, await tokens.count_async(text))))
                text += CUT_MARK
            parts.append(head + text + tail)
        if not parts:
            return "", notices
        return PREAMBLE + "".join(parts).rstrip("\n"), notices

    async def _texts(self, rows: list[Any], kept: list[int]) -> list[str]:
        """The text of each document that keeps anything: whole, or as much of its start as can hold ``kept``
        tokens (a proportional share of its characters, with room to spare; the caller cuts it exactly)."""
        wanted: dict[str, int | None] = {}
        for row, keep in zip(rows, kept, strict=True):
            if keep >= row["tokens"]:
                wanted[row["id"]] = None
            elif keep > 0:
                wanted[row["id"]] = min(int(row["chars"]), int(row["chars"] * keep / max(row["tokens"], 1) * 2) + 64)
        if not wanted:
            return ["" for _ in rows]
        cuts = [(D.c.id == doc_id, sa.func.left(D.c.text, chars)) for doc_id, chars in wanted.items() if chars]
        text = sa.case(*cuts, else_=D.c.text) if cuts else D.c.text
        query = sa.select(D.c.id, text.label("text")).where(D.c.id.in_(list(wanted)))
        async with self.engine.connect() as conn:
            found = {r.id: r.text for r in (await conn.execute(query)).all()}
        return [found.get(row["id"], "") for row in rows]


def _public_columns() -> list[Any]:
    return [c for c in D.c if c.name not in ("text", "owner", "sha256")]
