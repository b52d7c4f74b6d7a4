"""/api/shared: a chat session someone shared, read-only, for signed-in users who may see everything it used."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import CurrentUser, ServicesDep
from backend.api.openapi import errors
from backend.chat.schemas import SharedSession

router = APIRouter(prefix="/api/shared", tags=["sessions"])


@router.get("/{token}", responses=errors(404))
async def read_shared_session(token: str, user: CurrentUser, services: ServicesDep) -> SharedSession:
    """404 for a revoked or unknown link, and for a reader who may not see every model and RAG repository (and
    cited collection) the session used."""
    return await services.chat.shared(user, token)
