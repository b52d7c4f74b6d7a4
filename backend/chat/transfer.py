"""Export a session as JSON (every branch, importable) or Markdown (the active branch, for people); import a JSON
export as a new session of the caller.

An import is validated whole before anything is written (the format and version, every field, unique message ids,
each parent before its children, the active leaf among the messages), then written in one transaction: bad input
answers 4xx with nothing written. Imported messages get new ids (an export imported twice makes two sessions);
their text, metadata, statuses and times are kept. The body is bounded by the /api JSON cap
(``LISA_MAX_JSON_BYTES``), the message count by ``MAX_MESSAGES``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.chat.schemas import (
    ID_MAX,
    TITLE_MAX,
    ChatArguments,
    ChatRagSpec,
    MessageStatus,
    ModelId,
    ResourceId,
    Role,
)
from backend.chat.sessions import settings_values
from backend.chat.store import ChatStore, new_id
from backend.chat.tree import MessageTree
from backend.text import Text, refuse_unstorable

FORMAT = "lisa.chat.session"
VERSION = 1
MAX_MESSAGES = 10_000
MAX_MESSAGE_CHARS = 1_000_000
MAX_METADATA_DEPTH = 8


def _storable(value: Any, depth: int = 0) -> None:
    """Metadata is free-form JSON, but it must fit in jsonb: no NUL, valid Unicode, bounded depth."""
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, str):
        refuse_unstorable(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("metadata numbers must be finite (JSON has no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_unstorable(str(key))
            _storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable(item, depth + 1)


def _plausible(value: datetime) -> datetime:
    if not 1900 <= value.year <= 9000:
        raise ValueError("must be a time between the years 1900 and 9000")
    return value


Time = Annotated[AwareDatetime, AfterValidator(_plausible)]  # with its UTC offset, as exports write it


class ExportedMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: ResourceId
    parent_id: ResourceId | None
    role: Role
    content: Text = Field(max_length=MAX_MESSAGE_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: MessageStatus = MessageStatus.complete
    error: Text | None = Field(default=None, max_length=10_000)
    created_at: Time
    updated_at: Time | None = None

    @field_validator("metadata")
    @classmethod
    def _storable_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        _storable(value)
        return value


class ExportedSession(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=ID_MAX, description="The id it had; not kept on import.")
    title: Text = Field(min_length=1, max_length=TITLE_MAX)
    model: ModelId | None = None
    system_prompt: Text | None = Field(default=None, max_length=32_000)
    arguments: ChatArguments | None = None
    history_buffer: int | None = Field(default=None, ge=0, le=1_000)
    rag: ChatRagSpec | None = None
    active_leaf_id: ResourceId | None = None
    created_at: Time
    updated_at: Time


class SessionExport(BaseModel):
    """A session with every branch of its messages (parents before children)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["lisa.chat.session"]
    version: Literal[1]
    exported_at: Time
    session: ExportedSession
    messages: list[ExportedMessage] = Field(max_length=MAX_MESSAGES)

    @model_validator(mode="after")
    def _a_tree(self) -> SessionExport:
        seen: set[str] = set()
        for n, message in enumerate(self.messages):
            if message.id in seen:
                raise ValueError(f"messages[{n}]: id '{message.id}' appears twice")
            if message.parent_id is not None and message.parent_id not in seen:
                raise ValueError(f"messages[{n}]: parent_id '{message.parent_id}' is not an earlier message")
            seen.add(message.id)
        leaf = self.session.active_leaf_id
        if leaf is not None and leaf not in seen:
            raise ValueError(f"session.active_leaf_id '{leaf}' is not one of the messages")
        return self


def export_json(row: Mapping[Any, Any], messages: Sequence[Mapping[Any, Any]]) -> SessionExport:
    settings = row["settings"]
    return SessionExport.model_validate(
        {
            "format": FORMAT,
            "version": VERSION,
            "exported_at": datetime.now(UTC),
            "session": {k: v for k, v in {**row, **settings}.items() if k in ExportedSession.model_fields},
            "messages": [{k: m[k] for k in ExportedMessage.model_fields} for m in messages],
        }
    )


def export_markdown(row: Mapping[Any, Any], messages: Sequence[Mapping[Any, Any]]) -> str:
    """The active branch as Markdown: a heading per message, its text as written."""
    tree = MessageTree(messages)
    lines = [f"# {row['title']}", ""]
    if row["model"]:
        lines.append(f"- Model: {row['model']}")
    lines += [f"- Created: {row['created_at'].isoformat()}", f"- Exported: {datetime.now(UTC).isoformat()}", ""]
    if system_prompt := row["settings"].get("system_prompt"):
        lines += ["## System", "", system_prompt, ""]
    for message in tree.branch(row["active_leaf_id"]):
        heading = str(message["role"]).capitalize()
        meta = message["metadata"] or {}
        notes = [str(meta["model"])] if message["role"] == "assistant" and meta.get("model") else []
        if message["status"] != MessageStatus.complete.value:
            notes.append(str(message["status"]))
        lines += [f"## {heading}" + (f" ({', '.join(notes)})" if notes else ""), "", str(message["content"]), ""]
        if message["error"]:
            lines += [f"> Error: {message['error']}", ""]
        for source in meta.get("sources") or []:
            if isinstance(source, dict):
                lines.append(f"- [{source.get('index', '')}] {source.get('name', '')} ({source.get('source', '')})")
        if meta.get("sources"):
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _usage_of(message: ExportedMessage) -> tuple[int, int]:
    usage = message.metadata.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) and prompt >= 0 else 0,
        completion if isinstance(completion, int) and completion >= 0 else 0,
    )


async def import_session(store: ChatStore, owner: str, data: SessionExport, project_id: str | None) -> str:
    """Writes ``data`` as a new session of ``owner`` (all or nothing); its id."""
    ids = {m.id: new_id("msg") for m in data.messages}
    rows = [
        {
            "id": ids[m.id],
            "parent_id": ids[m.parent_id] if m.parent_id is not None else None,
            "role": m.role.value,
            "content": m.content,
            "metadata": m.metadata,
            "status": m.status.value,
            "error": m.error,
            "created_at": m.created_at,
            "updated_at": m.updated_at or m.created_at,
        }
        for m in data.messages
    ]
    spent = [_usage_of(m) for m in data.messages if m.role == Role.assistant]
    session = data.session
    values = {
        "title": session.title,
        "project_id": project_id,
        "model": session.model,
        "settings": settings_values(session),
        "active_leaf_id": ids[session.active_leaf_id] if session.active_leaf_id else None,
        "prompt_tokens": sum(p for p, _ in spent),
        "completion_tokens": sum(c for _, c in spent),
        "created_at": session.created_at,
        "updated_at": datetime.now(UTC),
    }
    return await store.import_session(owner, values, rows)
