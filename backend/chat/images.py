"""Images generated in a session: asked of an imagegen model through the gateway (``/v1/images/generations``, as the
caller), kept with the session, served back only to its owner.

A generation is one turn of the session: the prompt as a user message, an answer whose metadata lists the image
ids (``{"kind": "images", "images": [...]}``), and the images, all written in one transaction once the model has
answered, so a failed generation leaves nothing behind. Lists carry each image's metadata and URL, never its bytes
(no data URLs); ``GET /api/sessions/{id}/images/{image_id}`` serves the bytes with the type sniffed from them (PNG,
JPEG, GIF or WebP only: anything else the model sends is refused, 502, so nothing else is ever served).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.principal import Principal
from backend.chat import search as fts
from backend.chat.context_schemas import ImageGeneration, ImagePage, ImagePublic, ImageRequest
from backend.chat.store import ChatStore, new_id
from backend.db import tables
from backend.errors import NotFound, UpstreamError
from backend.paging import PageParams, read_page
from backend.serve.internal import GatewayClient

I = tables.chat_images  # noqa: E741
M = tables.chat_messages
S = tables.chat_sessions
SIGNATURES = [(b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
              (b"GIF89a", "image/gif")]  # fmt: skip


def new_image_id() -> str:
    """Time-ordered (paging by id lists images oldest first)."""
    return f"img_{time.time_ns():016x}{secrets.token_hex(4)}"


def sniff(data: bytes) -> str | None:
    """The image type the bytes themselves say, or None when they are none of the kept types."""
    for signature, mime in SIGNATURES:
        if data.startswith(signature):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_url(session_id: str, image_id: str) -> str:
    return f"/api/sessions/{session_id}/images/{image_id}"


def public(row: Any) -> ImagePublic:
    return ImagePublic.model_validate({**row, "url": image_url(row["session_id"], row["id"])})


def decoded_images(answer: dict[str, Any], max_bytes: int) -> list[tuple[bytes, str, str | None]]:
    """(bytes, mime, revised prompt) of each image of an OpenAI images answer; UpstreamError for anything else."""
    data = answer.get("data")
    if not isinstance(data, list) or not data:
        raise UpstreamError("the image model answered without any image")
    images = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("b64_json"), str):
            raise UpstreamError(
                "the image model answered without image data (b64_json); LISA keeps generated images, so it asks "
                "for them inline"
            )
        encoded = item["b64_json"]
        if len(encoded) > (max_bytes + 2) // 3 * 4 + 4:
            raise UpstreamError(f"the image model sent an image over the limit of {max_bytes} bytes")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UpstreamError("the image model sent image data that is not valid base64") from exc
        mime = sniff(raw)
        if mime is None:
            raise UpstreamError("the image model sent data that is not a PNG, JPEG, GIF or WebP image")
        revised = item.get("revised_prompt")
        images.append((raw, mime, revised if isinstance(revised, str) else None))
    return images


class SessionImages:
    def __init__(self, engine: AsyncEngine, store: ChatStore, client: GatewayClient, *, max_bytes: int) -> None:
        self.engine = engine
        self.store = store
        self.client = client
        self.max_bytes = max_bytes

    async def generate(self, principal: Principal, session_id: str, request: ImageRequest) -> ImageGeneration:
        await self.store.session(principal.username, session_id)  # 404 before any model call
        payload: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "n": request.n,
                                   "response_format": "b64_json"}  # fmt: skip
        if request.size is not None:
            payload["size"] = request.size
        answer = await self.client.complete(principal, "images/generations", payload)  # the gateway's errors pass
        images = decoded_images(answer, self.max_bytes)
        ids = [new_image_id() for _ in images]
        question, reply = new_id("msg"), new_id("msg")
        revised = next((r for _, _, r in images if r), None)
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            session = await self.store.session(principal.username, session_id, conn)  # not deleted meanwhile
            messages = [
                {"id": question, "session_id": session_id, "parent_id": session["active_leaf_id"], "role": "user",
                 "content": request.prompt, "created_at": now, "updated_at": now,
                 "metadata": {"kind": "image_request", "model": request.model, "n": request.n, "size": request.size}},
                {"id": reply, "session_id": session_id, "parent_id": question, "role": "assistant",
                 "content": f"{len(images)} image{'s' if len(images) > 1 else ''}" + (f": {revised}" if revised else ""),
                 "created_at": now, "updated_at": now,
                 "metadata": {"kind": "images", "model": request.model, "images": ids}},
            ]  # fmt: skip
            for message in messages:  # one at a time: the answer's parent is the question
                await conn.execute(M.insert().values(**message))
            rows = [
                {"id": image_id, "session_id": session_id, "owner": principal.username, "message_id": reply,
                 "model": request.model, "prompt": request.prompt, "revised_prompt": revised_prompt, "mime": mime,
                 "size_bytes": len(raw), "data": raw, "created_at": now}
                for image_id, (raw, mime, revised_prompt) in zip(ids, images, strict=True)
            ]  # fmt: skip
            inserted = (await conn.execute(I.insert().returning(*_public_columns()), rows)).all()
            await conn.execute(
                S.update()
                .where(S.c.id == session_id)
                .values(active_leaf_id=reply, updated_at=now, search=fts.appended(request.prompt))
            )
        return ImageGeneration(
            user_message_id=question, assistant_message_id=reply, images=[public(r._mapping) for r in inserted]
        )

    async def page(self, principal: Principal, session_id: str, params: PageParams) -> ImagePage:
        """Oldest first; metadata and URLs only."""
        await self.store.session(principal.username, session_id)
        query = sa.select(*_public_columns()).where(I.c.session_id == session_id, I.c.owner == principal.username)
        rows, next_cursor = await read_page(self.engine, query, I.c.id, params)
        return ImagePage(data=[public(r) for r in rows], next_cursor=next_cursor)

    async def content(self, principal: Principal, session_id: str, image_id: str) -> tuple[str, bytes]:
        """(mime, bytes) of one image of the caller's session; 404 for anyone else."""
        query = sa.select(I.c.mime, I.c.data).where(
            I.c.id == image_id, I.c.session_id == session_id, I.c.owner == principal.username
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            await self.store.session(principal.username, session_id)  # the session's own 404 first
            raise NotFound(f"image '{image_id}' not found in session '{session_id}'")
        return str(row.mime), bytes(row.data)


def _public_columns() -> list[Any]:
    return [c for c in I.c if c.name not in ("data", "owner")]
