"""The chat turn's prompt with what joins it besides the question: the session's documents (cut to fit, with
notices) and the branch's history (compacted when it nears the context window). One call for the chat service's
build-prompt step (backend/chat/turn.py ``ChatTurns.plan``):

    ctx = await services.context.prompt.prepare(principal, session, model, system_prompt, earlier, question, buffer)
    payload["messages"] = ctx.messages           # persona, history (summary folded in), documents + question
    metadata.update(ctx.metadata)                # the answer's metadata: context_documents notices, compaction
    for event, data in ctx.events: ...           # SSE before the answer: "context" (notices), "compaction" (summary)

Where things go, so that chat templates that drop system messages (Gemma's) or need alternating roles still carry
them: the documents at the head of the question's user message, a compaction summary at the head of the first
history message kept (a user message).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backend.auth.principal import Principal, can_access
from backend.chat import tokens
from backend.chat.compaction import Compacted, Compactor, from_last_summary
from backend.chat.compaction_plan import SUMMARY
from backend.chat.context_docs import ContextDocuments, context_window
from backend.chat.context_schemas import ContextNotice, ContextPreview
from backend.errors import NotFound
from backend.registry.route_table import RouteTable

DOCUMENTS_SHARE = 0.4  # of the context window, at most, for documents in context
QUESTION_SEPARATOR = "\n\n---\n\n"


@dataclass
class PromptContext:
    messages: list[dict[str, Any]]
    notices: list[ContextNotice] = field(default_factory=list)
    compacted: Compacted | None = None
    documents_tokens: int = 0

    @property
    def metadata(self) -> dict[str, Any]:
        """For the answer's metadata (kept with the message)."""
        meta: dict[str, Any] = {}
        if self.documents_tokens:
            meta["documents_tokens"] = self.documents_tokens  # the session's documents joined the prompt
        if self.notices:
            meta["context_documents"] = [n.model_dump() for n in self.notices]
        made = self.compacted.summary_message if self.compacted else None
        if made is not None:
            info = made["metadata"]
            meta["compaction"] = {"summary_id": made["id"], "covers": len(info["covers"]),
                                  "tokens_before": info["tokens_before"], "tokens_after": info["tokens_after"]}  # fmt: skip
        if self.compacted is not None and self.compacted.notice:
            meta["compaction_notice"] = self.compacted.notice
        return meta

    @property
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """Server-sent events for the client, before the answer: what documents lost, a summary just made."""
        out: list[tuple[str, dict[str, Any]]] = []
        if self.notices:
            out.append(("context", {"notices": [n.model_dump() for n in self.notices]}))
        if self.compacted is not None and self.compacted.summary_message is not None:
            out.append(("compaction", {"message": self.compacted.summary_message}))
        elif self.compacted is not None and self.compacted.notice:
            out.append(("compaction", {"notice": self.compacted.notice}))
        return out


def chat_rows(path: Sequence[Mapping[Any, Any]], buffer: int) -> list[Mapping[Any, Any]]:
    """The branch's messages a prompt may carry: earlier summaries in place of what they cover, then the last
    ``buffer`` user and assistant messages (answers that failed with nothing said left out), a summary heading
    them kept."""
    rows = from_last_summary(path)
    summaries = [r for r in rows if (r.get("metadata") or {}).get("kind") == SUMMARY]
    said = [
        r for r in rows
        if r["role"] in ("user", "assistant") and (r["content"] or r.get("status") != "error")
    ]  # fmt: skip
    kept = said[-buffer:] if buffer else []
    return [*summaries[-1:], *kept]


class PromptContexts:
    def __init__(self, documents: ContextDocuments, compactor: Compactor, routes: RouteTable, default_window: int):
        self.documents = documents
        self.compactor = compactor
        self.routes = routes
        self.default_window = default_window

    async def prepare(
        self,
        principal: Principal,
        session: Mapping[Any, Any],
        model: str,
        system_prompt: str | None,
        earlier: Sequence[Mapping[Any, Any]],
        question: str,
        buffer: int,
    ) -> PromptContext:
        """The messages of a turn. ``session``: its chat_sessions row (``id``, ``context_documents``: a session
        without documents is not looked into); ``earlier``: the branch before the question (chat_messages rows,
        oldest first); ``buffer``: the history buffer (last N messages)."""
        session_id = str(session["id"])
        route = await self.routes.get(model)
        window = context_window(route, self.default_window)
        docs, notices = "", list[ContextNotice]()
        if session.get("context_documents", 1):
            budget = int(window * DOCUMENTS_SHARE)
            docs, notices = await self.documents.context_for(session_id, principal, route, budget)
        asked = docs + QUESTION_SEPARATOR + question if docs else question
        head = [{"role": "system", "content": system_prompt}] if system_prompt else []
        fixed = tokens.count_messages([*head, {"role": "user", "content": asked}])
        rows = chat_rows(earlier, buffer)
        if route is None:  # the gateway answers 404 for it; nothing to compact for
            compacted = Compacted(kept=[r for r in rows if (r.get("metadata") or {}).get("kind") != SUMMARY])
        else:
            compacted = await self.compactor.compact(principal, route, session_id, rows, fixed)
        earlier_messages = compacted.messages()
        if compacted.summary and not compacted.kept:  # the summary alone: with the question, not a user turn before it
            earlier_messages, asked = [], earlier_messages[0]["content"] + QUESTION_SEPARATOR + asked
        messages = [*head, *earlier_messages, {"role": "user", "content": asked}]
        return PromptContext(messages, notices, compacted, await tokens.count_async(docs) if docs else 0)

    async def preview(self, principal: Principal, session_id: str, model: str) -> ContextPreview:
        """What the documents would add to the next prompt for ``model`` (``GET /api/sessions/{id}/context``)."""
        await self.documents.check_session(principal, session_id)
        route = await self.routes.get(model)
        if route is None or not can_access(principal, route.allowed_groups):
            raise NotFound(f"model '{model}' not found")
        window = context_window(route, self.default_window)
        budget = int(window * DOCUMENTS_SHARE)
        text, notices = await self.documents.context_for(session_id, principal, route, budget)
        return ContextPreview(
            model=model, context_window=window, budget_tokens=budget,
            documents_tokens=await tokens.count_async(text) if text else 0, text=text, notices=notices,
        )  # fmt: skip
