"""/api/sessions/{id}/images: images generated in a session (through /v1/images/generations), served back only to
the session's owner; lists carry metadata and URLs, never image data."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from backend.api.deps import CurrentUser, Paging, ServicesDep
from backend.api.openapi import errors
from backend.chat.context_schemas import ImageGeneration, ImagePage, ImageRequest

router = APIRouter(prefix="/api/sessions/{session_id}/images", tags=["chat context"])
IMAGE_BYTES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "The image (PNG, JPEG, GIF or WebP, as sniffed from its bytes).",
        "content": {
            m: {"schema": {"type": "string", "format": "binary"}}
            for m in ("image/png", "image/jpeg", "image/gif", "image/webp")
        },
    }
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 404, 429, 502, 504))
async def generate_images(
    session_id: str, body: ImageRequest, user: CurrentUser, services: ServicesDep
) -> ImageGeneration:
    """Asks an imagegen model for images as the caller (the gateway's access, limits and metering apply) and
    keeps them with the session: the prompt as a question, an answer listing the image ids, and the images."""
    return await services.context.images.generate(user, session_id, body)


@router.get("", responses=errors(404))
async def list_images(session_id: str, user: CurrentUser, services: ServicesDep, page: Paging) -> ImagePage:
    return await services.context.images.page(user, session_id, page)


@router.get("/{image_id}", response_class=Response, responses={**IMAGE_BYTES, **errors(404)})
async def get_image(session_id: str, image_id: str, user: CurrentUser, services: ServicesDep) -> Response:
    mime, data = await services.context.images.content(user, session_id, image_id)
    return Response(
        data,
        media_type=mime,
        headers={
            "Cache-Control": "private, max-age=86400, immutable",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": "inline",
        },
    )
