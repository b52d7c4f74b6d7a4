"""/api/sessions/{id}/compact: compaction on request (the chat also compacts by itself before each turn)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import CurrentUser, ServicesDep
from backend.api.openapi import errors
from backend.chat.context_schemas import CompactionRequest, CompactionResult

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["chat context"])


@router.post("/compact", responses=errors(400, 404))
async def compact_session(
    session_id: str, body: CompactionRequest, user: CurrentUser, services: ServicesDep
) -> CompactionResult:
    """Summarises the older turns of the session's active branch when its prompt nears the model's context window
    (or, with ``force``, whenever there is something to summarise). The summary is kept as a message of the branch;
    nothing is deleted. A summarising request that fails is reported in ``notice``."""
    return await services.context.compactor.compact_session(user, session_id, body.model, force=body.force)
