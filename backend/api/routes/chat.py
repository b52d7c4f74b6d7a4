"""POST /api/sessions/{id}/messages: one chat turn, streamed as server-sent events (backend/chat/turn.py has the
events and their order). Errors before the answer begins are ordinary JSON errors; the turn then leaves nothing.

In the app, requests to it are answered by its raw-ASGI fast path (backend/api/chat_asgi.py, called by the request
guard), which runs ``serve_turn`` and writes the same stream; the route declared here documents the endpoint (and
serves it where the guard is not in front)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import StreamingResponse

from backend.api.deps import CurrentUser, ServicesDep
from backend.api.openapi import errors
from backend.auth.principal import Principal
from backend.chat.features import check_settings
from backend.chat.schemas import ChatTurn, ToolDecision
from backend.chat.turn import Prefetch, RunningTurn
from backend.errors import NotFound
from backend.services import Services

router = APIRouter(prefix="/api/sessions", tags=["chat"])


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: user_message, assistant_message, OpenAI chunk deltas (data only), "
        "sources, tool_approval, tool_call, tool_result, tool_limit, error, usage, done.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **errors(400, 403, 404, 409, 429, 502, 504),
}


@router.post("/{session_id}/messages", response_class=EventStream, responses=STREAM_RESPONSES)
async def send_message(session_id: str, body: ChatTurn, user: CurrentUser, services: ServicesDep) -> EventStream:
    """Asks the model (through the gateway, as the caller: its access rules, limits and metering) and streams
    the answer, saving the question at once and the answer as it arrives."""
    running = await serve_turn(services, user, session_id, body)
    return EventStream(running.events(), headers=STREAM_HEADERS)


async def serve_turn(
    services: Services, user: Principal, session_id: str, body: ChatTurn, prefetched: Prefetch | None = None
) -> RunningTurn:
    """The route's steps after validation (the fast path runs them too, with the read it started early): the
    feature toggles, then the turn."""
    await check_settings(services.configuration, user, body)
    return await services.chat_turns.start(user, session_id, body, prefetched)


@router.post("/{session_id}/tool-calls/{call_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404, 409))
async def decide_tool_call(session_id: str, call_id: str, body: ToolDecision, user: CurrentUser,
                           services: ServicesDep) -> None:  # fmt: skip
    """Approves or denies a tool call that waits (a turn in ``safe`` tool mode; its ``tool_approval`` event).
    404: no such waiting call in this caller's session (another user's too); 409: already decided or timed out.
    Any backend process may take the decision: waiting calls are kept in the database."""
    if services.chat_turns.tools is None:
        raise NotFound(f"tool call '{call_id}' not found in session '{session_id}'")
    await services.chat_turns.tools.approvals.decide(user.username, session_id, call_id, body.approve)
