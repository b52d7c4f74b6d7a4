"""Step 1 of a chat turn (backend/chat/turn.py): build the prompt and what the turn saves.

``plan`` takes the question (new, or the one being answered again), the persona and directives
(``resolve_system_prompt``: the one place a persona, prompt templates or an assistant stack are resolved,
backend/chat/personas.py), the history buffer (the last N messages of the branch), the model arguments and RAG;
``build_messages`` joins the session's documents and compacts the history (backend/chat/prompt_context.py). Each is a
method of ``ChatTurns`` (through the ``TurnPlanning`` mixin) so that what others build slots in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.auth.principal import Principal
from backend.chat.personas import Personas
from backend.chat.prompt_context import PromptContext, PromptContexts
from backend.chat.schemas import ChatTurn
from backend.chat.store import new_id
from backend.errors import BadRequest, NotFound

DIRECTIVE_SEPARATOR = "\n\n"  # between the question and each directive added to it


@dataclass
class TurnPlan:
    """What one turn sends and saves."""

    session_id: str
    question_id: str
    question: dict[str, Any] | None  # the new user message's values; None: regenerating an answer to question_id
    previous_leaf: str | None
    assistant_id: str
    payload: dict[str, Any]
    metadata: dict[str, Any]  # of the answer: model, arguments, rag (usage, latency and sources added at the end)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # SSE before the answer (context notices)
    owner: str = ""  # the session's owner (the caller)


class TurnPlanning:
    """The prompt-building steps of ``ChatTurns``, on the parts it holds."""

    personas: Personas
    context: PromptContexts
    history_buffer: int
    default_model: Callable[[], str | None]

    async def resolve_system_prompt(
        self, principal: Principal, settings: Mapping[Any, Any], turn: ChatTurn
    ) -> tuple[str | None, list[str]]:
        """The persona of this turn (the turn's own template or system prompt, else the session's, an assistant's
        among them) and the directive texts added to the question (backend/chat/personas.py)."""
        return await self.personas.resolve(principal, settings, turn)

    async def build_messages(
        self,
        principal: Principal,
        session: Mapping[Any, Any],
        model: str,
        system_prompt: str | None,
        earlier: list[dict[str, Any]],
        question: str,
        buffer: int,
    ) -> PromptContext:
        """The messages sent to the model: the persona, the history (compacted near the context window), the
        session's documents and the question (a session without documents costs no query)."""
        return await self.context.prepare(principal, session, model, system_prompt, earlier, question, buffer)

    async def plan(
        self,
        principal: Principal,
        session_id: str,
        turn: ChatTurn,
        session: Mapping[Any, Any],
        path: list[dict[str, Any]],
    ) -> TurnPlan:
        """The turn's prompt and what it saves, from the session and the path to where the turn goes."""
        settings = session["settings"]
        parent_id = turn.parent_id if turn.has_parent else session["active_leaf_id"]
        if parent_id is not None and not path:
            raise NotFound(f"message '{parent_id}' not found in session '{session_id}'")
        if turn.content is None:  # regenerate the answer to parent_id
            if path[-1]["role"] != "user":
                raise BadRequest("to regenerate, 'parent_id' must name a user message (the question)", "parent_id")
            question_id, question, text, earlier = str(path[-1]["id"]), None, str(path[-1]["content"]), path[:-1]
        else:
            question_id, text, earlier = new_id("msg"), turn.content, path
            question = {"id": question_id, "parent_id": parent_id, "role": "user", "content": text}
        model = turn.model or session["model"] or self.default_model()
        if not model:
            raise BadRequest("no model: name one in the message or the session", "model")
        arguments = {
            **settings.get("arguments", {}),
            **(turn.arguments.model_dump(exclude_none=True) if turn.arguments else {}),
        }
        buffer = next(
            b for b in (turn.history_buffer, settings.get("history_buffer"), self.history_buffer) if b is not None
        )
        system_prompt, directives = await self.resolve_system_prompt(principal, settings, turn)
        asked = DIRECTIVE_SEPARATOR.join([text, *directives])
        ctx = await self.build_messages(principal, {**session, "id": session_id}, model, system_prompt, earlier,
                                        asked, buffer)  # fmt: skip
        payload: dict[str, Any] = {"model": model, "messages": ctx.messages, **arguments}
        payload["stream_options"] = {"include_usage": True}
        rag = turn.rag.model_dump(exclude_none=True) if turn.rag else settings.get("rag")
        if rag:
            payload["rag"] = rag
        metadata: dict[str, Any] = {"model": model, "arguments": arguments}
        if rag:
            metadata["rag"] = rag
        metadata.update(ctx.metadata)
        return TurnPlan(session_id, question_id, question, session["active_leaf_id"], new_id("msg"), payload, metadata,
                        ctx.events, principal.username)  # fmt: skip
