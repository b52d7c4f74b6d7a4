"""The JSON export of a chat session (``format: lisa.chat.session``), as written and as an import must send it.

Version 2 (written now) carries every setting of the session and its documents in context; version 1 (sessions,
messages, the first settings) is still read. Every field is bounded and checked here, before anything is written;
what the importer may use (models, templates, assistants, repositories, MCP servers, toggles) is checked by
backend/chat/transfer.py.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from backend.chat.schemas import (
    DIRECTIVES_MAX,
    ID_MAX,
    SYSTEM_PROMPT_MAX,
    TITLE_MAX,
    ChatArguments,
    ChatRagSpec,
    MessageStatus,
    ModelId,
    ResourceId,
    Role,
    ToolSelection,
    Variables,
)
from backend.text import Text, refuse_unstorable

FORMAT = "lisa.chat.session"
VERSION = 2
MAX_MESSAGES = 10_000
MAX_MESSAGE_CHARS = 1_000_000
MAX_METADATA_DEPTH = 8
MAX_DOCUMENTS = 1_000  # the server's own cap (LISA_CONTEXT_MAX_DOCUMENTS) is checked on import
MAX_TOOLS = 100


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
PersonaText = Annotated[Text, Field(max_length=SYSTEM_PROMPT_MAX)]


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


class ExportedDocument(BaseModel):
    """A document in the session's context: its extracted text (the file itself is never kept) and summary."""

    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=255)
    text: Text = Field(description="The extracted text (bounded on import by LISA_CONTEXT_MAX_CHARS).")
    size_bytes: int = Field(ge=0, le=2**62, description="Of the file uploaded.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Of the file uploaded.")
    summary: Text | None = Field(default=None, max_length=MAX_MESSAGE_CHARS)
    summary_model: ModelId | None = None
    summarized_at: Time | None = None
    created_at: Time


class ExportedSession(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=ID_MAX, description="The id it had; not kept on import.")
    title: Text = Field(min_length=1, max_length=TITLE_MAX)
    model: ModelId | None = None
    system_prompt: Text | None = Field(default=None, max_length=SYSTEM_PROMPT_MAX)
    arguments: ChatArguments | None = None
    history_buffer: int | None = Field(default=None, ge=0, le=1_000)
    rag: ChatRagSpec | None = None
    persona_template_id: ResourceId | None = None
    variables: Variables | None = Field(default=None, max_length=50)
    directive_template_ids: list[ResourceId] | None = Field(default=None, max_length=DIRECTIVES_MAX)
    assistant_id: ResourceId | None = Field(default=None, description="The assistant the session was started from.")
    assistant_persona: PersonaText | None = Field(default=None, description="The assistant's persona, as taken.")
    directives: list[PersonaText] | None = Field(
        default=None, max_length=DIRECTIVES_MAX, description="The assistant's directive texts, as taken."
    )
    mcp_tools: list[ToolSelection] | None = Field(default=None, max_length=MAX_TOOLS)
    active_leaf_id: ResourceId | None = None
    created_at: Time
    updated_at: Time


class SessionExport(BaseModel):
    """A session with every branch of its messages (parents before children) and its documents in context."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["lisa.chat.session"]
    version: Literal[1, 2]
    exported_at: Time
    session: ExportedSession
    messages: list[ExportedMessage] = Field(max_length=MAX_MESSAGES)
    context_documents: list[ExportedDocument] = Field(default_factory=list, max_length=MAX_DOCUMENTS)

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
        names: set[str] = set()
        for n, document in enumerate(self.context_documents):
            if document.name in names:
                raise ValueError(f"context_documents[{n}]: name '{document.name}' appears twice")
            names.add(document.name)
        if self.version == 1 and self.context_documents:
            raise ValueError("context_documents need version 2")
        return self
