"""POST /api/sessions/{id}/messages: one chat turn, streamed as server-sent events (backend/chat/turn.py has the
events and their order). Errors before the answer begins are ordinary JSON errors; the turn then leaves nothing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from backend.api.deps import CurrentUser, ServicesDep
from backend.api.openapi import errors
from backend.chat.features import check_settings
from backend.chat.schemas import ChatTurn

router = APIRouter(prefix="/api/sessions", tags=["chat"])


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: user_message, assistant_message, OpenAI chunk deltas (data only), "
        "sources, error, usage, done.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **errors(400, 403, 404, 409, 429, 502, 504),
}


@router.post("/{session_id}/messages", response_class=EventStream, responses=STREAM_RESPONSES)
async def send_message(session_id: str, body: ChatTurn, user: CurrentUser, services: ServicesDep) -> EventStream:
    """Asks the model (through the gateway, as the caller: its access rules, limits and metering) and streams
    the answer, saving the question at once and the answer as it arrives."""
    await check_settings(services.configuration, user, body)
    running = await services.chat_turns.start(user, session_id, body)
    return EventStream(running.events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
