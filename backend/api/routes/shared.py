"""/api/shared: a chat session someone shared, read-only, for signed-in users who may see everything it used."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import CurrentUser, ServicesDep
from backend.api.openapi import errors
from backend.chat.features import shows_metadata, without_metadata
from backend.chat.schemas import MessagePublic, SharedSession

router = APIRouter(prefix="/api/shared", tags=["sessions"])


@router.get("/{token}", responses=errors(404))
async def read_shared_session(token: str, user: CurrentUser, services: ServicesDep) -> SharedSession:
    """404 for a revoked or unknown link, and for a reader who may not see every model and RAG repository (and
    cited collection) the session used. Without the ``view_meta_data`` feature the messages' metadata is left out,
    as in one's own sessions."""
    session = await services.chat.shared(user, token)
    if await shows_metadata(services.configuration, user):
        return session
    stripped = without_metadata([m.model_dump() for m in session.messages])
    return session.model_copy(update={"messages": [MessagePublic.model_validate(m) for m in stripped]})
