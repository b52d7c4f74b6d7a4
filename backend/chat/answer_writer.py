"""Persists one streaming answer off the hot path.

The stream only appends text to a list; a task of the writer's own does every database write: the insert when the
first token arrives (started then, so the token goes out without waiting for it), the text so far every
``flush_seconds`` (not per token), and the last write with the status, metadata and the session's token sums.
Because the writes run in their own task, a client that disconnects (its request task is cancelled) or a server
that stops still gets its partial answer saved, marked ``incomplete``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from backend.chat.store import ChatStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FinalState:
    status: str
    error: str | None
    metadata: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int


class AnswerWriter:
    def __init__(
        self, store: ChatStore, session_id: str, message_id: str, parent_id: str, flush_seconds: float
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.message_id = message_id
        self.parent_id = parent_id
        self.flush_seconds = flush_seconds
        self.parts: list[str] = []
        self._final: FinalState | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    def begin(self, metadata: dict[str, Any]) -> None:
        """At the first token: the message is inserted by the writer's task (the caller does not wait)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(metadata), name=f"chat-answer-{self.message_id}")

    def add(self, text: str) -> None:
        self.parts.append(text)

    def finish(self, final: FinalState) -> None:
        self._final = final
        self._wake.set()
        self.begin(final.metadata)

    async def wait(self) -> None:
        """Until the last write is done (or failed: logged). Shielded: a cancelled waiter leaves the write running."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._task)

    async def _run(self, metadata: dict[str, Any]) -> None:
        try:
            written = len(self.parts)
            await self.store.add_message(
                self.session_id,
                {
                    "id": self.message_id,
                    "parent_id": self.parent_id,
                    "role": "assistant",
                    "content": "".join(self.parts),
                    "metadata": metadata,
                    "status": "incomplete",
                },
                searchable=False,  # its words join the session's search when it is finished
            )
            while self._final is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
                if self._final is None and len(self.parts) > written:
                    written = len(self.parts)
                    await self.store.update_message(self.message_id, {"content": "".join(self.parts)})
            final = self._final
            values = {
                "content": "".join(self.parts),
                "status": final.status,
                "error": final.error,
                "metadata": final.metadata,
            }
            await self.store.finish_message(
                self.session_id, self.message_id, values, final.prompt_tokens, final.completion_tokens
            )
        except Exception:
            log.exception("could not save the answer %s of session %s", self.message_id, self.session_id)
            raise
