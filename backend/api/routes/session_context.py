"""/api/sessions/{id}/context and /compact: what the session's documents add to the next prompt, and compaction on
request (the chat also compacts by itself before each turn)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.api.deps import CurrentUser, ServicesDep
from backend.api.openapi import errors
from backend.chat.context_schemas import CompactionRequest, CompactionResult, ContextPreview

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["chat context"])


@router.get("/context", responses=errors(404))
async def preview_context(
    session_id: str,
    user: CurrentUser,
    services: ServicesDep,
    model: Annotated[str, Query(min_length=1, max_length=128, description="The model the prompt is for.")],
) -> ContextPreview:
    """The documents' text as it would join the next question for ``model`` (cut to fit its context window) and
    the notices naming what was cut."""
    return await services.context.prompt.preview(user, session_id, model)


@router.post("/compact", responses=errors(400, 404))
async def compact_session(
    session_id: str, body: CompactionRequest, user: CurrentUser, services: ServicesDep
) -> CompactionResult:
    """Summarises the older turns of the session's active branch when its prompt nears the model's context window
    (or, with ``force``, whenever there is something to summarise). The summary is kept as a message of the branch;
    nothing is deleted. A summarising request that fails is reported in ``notice``."""
    return await services.context.compactor.compact_session(user, session_id, body.model, force=body.force)
