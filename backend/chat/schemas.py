"""Schema families of chat projects, sessions and messages (the table rows never leave backend/chat)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.paging import Page
from backend.rag.chat import RagSpec
from backend.text import Text

TITLE_MAX = 512
SYSTEM_PROMPT_MAX = 32_000  # characters of a persona (system prompt)
CONTENT_MAX = 200_000  # characters of one message a client sends
HISTORY_MAX = 1_000  # messages a history buffer may hold
ID_MAX = 40
ResourceId = Annotated[str, Field(min_length=1, max_length=ID_MAX, pattern=r"^[A-Za-z0-9_-]+$")]
ModelId = Annotated[Text, Field(min_length=1, max_length=128)]
Name = Annotated[Text, Field(min_length=1, max_length=128)]
ToolSelection = Annotated[Text, Field(min_length=1, max_length=300)]
StopWord = Annotated[Text, Field(min_length=1, max_length=64)]
VariableName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Variables = dict[VariableName, Annotated[Text, Field(max_length=SYSTEM_PROMPT_MAX)]]
DIRECTIVES_MAX = 10


class Role(StrEnum):
    system = "system"
    user = "user"
    assistant = "assistant"
    tool = "tool"


class MessageStatus(StrEnum):
    complete = "complete"  # the whole answer arrived
    incomplete = "incomplete"  # still streaming, or cut off (the client left, the server stopped): what arrived
    error = "error"  # the upstream failed mid-answer; ``error`` says why


class ChatArguments(BaseModel):
    """Model arguments a chat may set: an allowlist, each bounded (anything else is refused, 422)."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stop: list[StopWord] | None = Field(default=None, max_length=4, description="Up to 4 stop words.")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class ChatRagSpec(RagSpec):
    """The gateway's ``rag`` field (backend/rag/chat.py ``RagSpec``) with storable text."""

    repositories: list[Name] = Field(min_length=1, max_length=10)
    collections: list[Name] = Field(default_factory=list, max_length=50)
    tags: list[Name] = Field(default_factory=list, max_length=50)


class _ChatSettings(BaseModel):
    """What a session remembers for its next turns (a message may override each for one turn)."""

    model_config = ConfigDict(extra="forbid")
    model: ModelId | None = Field(default=None, description="The model answers use when a message names none.")
    system_prompt: Text | None = Field(default=None, max_length=SYSTEM_PROMPT_MAX, description="The persona.")
    arguments: ChatArguments | None = None
    history_buffer: int | None = Field(
        default=None, ge=0, le=HISTORY_MAX, description="Earlier messages sent with each turn (default: server's)."
    )
    rag: ChatRagSpec | None = None
    persona_template_id: ResourceId | None = Field(
        default=None, description="A persona prompt template (filled with 'variables'), in place of 'system_prompt'."
    )
    variables: Variables | None = Field(
        default=None, max_length=50, description="Values of the templates' {{placeholders}}."
    )
    directive_template_ids: list[ResourceId] | None = Field(
        default=None, max_length=DIRECTIVES_MAX, description="Directive templates, added to the user's message."
    )


class SessionCreate(_ChatSettings):
    title: Text = Field(default="New chat", min_length=1, max_length=TITLE_MAX)
    project_id: ResourceId | None = None
    assistant_id: ResourceId | None = Field(
        default=None,
        description="Start from an assistant: its model, arguments, persona, directives, RAG collections and MCP "
        "tools (fields sent here override them; 'variables' fill its persona's placeholders).",
    )


class SessionUpdate(_ChatSettings):
    """Only the fields sent change; ``null`` clears a setting (``project_id: null`` takes the session out of its
    project). ``active_leaf_id`` switches the branch shown: the session then shows the path to that message,
    continued by its newest descendants."""

    title: Text | None = Field(default=None, min_length=1, max_length=TITLE_MAX)
    project_id: ResourceId | None = None
    active_leaf_id: ResourceId | None = None
    assistant_id: ResourceId | None = Field(
        default=None,
        description="Switch to this assistant (null: none). Settings the session has not overridden take the new "
        "assistant's values; fields sent in the same request win (docs/chat.md, 'Assistants').",
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class SessionSummary(BaseModel):
    id: str
    title: str
    project_id: str | None
    model: str | None
    shared: bool
    usage: Usage
    created_at: datetime
    updated_at: datetime


class SessionPage(Page[SessionSummary]):
    pass


class MessagePublic(BaseModel):
    id: str
    parent_id: str | None
    role: Role
    content: str
    metadata: dict[str, Any] = Field(
        description="model, arguments, usage (prompt/completion tokens), latency_ms, ttft_ms, sources, tool_calls"
    )
    status: MessageStatus
    error: str | None
    created_at: datetime
    updated_at: datetime
    siblings: list[str] = Field(description="Ids of this message and its alternatives (same parent), oldest first.")
    sibling_index: int = Field(description="This message's position in ``siblings``.")


class SessionPublic(SessionSummary):
    system_prompt: str | None
    arguments: ChatArguments | None
    history_buffer: int | None
    rag: ChatRagSpec | None
    persona_template_id: str | None = None
    variables: dict[str, str] | None = None
    directive_template_ids: list[str] | None = None
    assistant_id: str | None = Field(default=None, description="The assistant the session was started from.")
    mcp_tools: list[str] | None = Field(default=None, description="MCP tools the chat may call (server_id/tool).")
    active_leaf_id: str | None
    messages: list[MessagePublic] = Field(description="The active branch, first message first.")


class SharedSession(BaseModel):
    """What a share link shows: the active branch, read-only."""

    id: str
    title: str
    owner: str
    model: str | None
    messages: list[MessagePublic]
    created_at: datetime
    updated_at: datetime


class ShareLink(BaseModel):
    token: str = Field(description="Shown once; a new link replaces (revokes) the previous one.")
    path: str = Field(description="GET this path (signed in) to read the session.")
    shared_at: datetime


# --- projects --------------------------------------------------------------------------------------------------
class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=256)


class ProjectUpdate(ProjectCreate):
    pass


class ProjectPublic(BaseModel):
    id: str
    name: str
    created_at: datetime
    updated_at: datetime


class ProjectPage(Page[ProjectPublic]):
    pass


# --- a chat turn -----------------------------------------------------------------------------------------------
class ChatTurn(BaseModel):
    """One turn of ``POST /api/sessions/{id}/messages``.

    - ``content`` without ``parent_id``: a new question after the session's active leaf;
    - ``content`` with ``parent_id``: a question under that message — edit-and-resend passes the parent of the
      edited question (the new one becomes its sibling; ``parent_id: null`` for the first message);
    - no ``content``, ``parent_id`` = a user message: regenerate — a new answer to that question, a sibling of the
      earlier answers.
    Earlier branches stay in the session (see ``siblings``)."""

    model_config = ConfigDict(extra="forbid")
    content: Text | None = Field(default=None, min_length=1, max_length=CONTENT_MAX)
    parent_id: ResourceId | None = None
    model: ModelId | None = None
    arguments: ChatArguments | None = None
    system_prompt: Text | None = Field(default=None, max_length=SYSTEM_PROMPT_MAX)
    history_buffer: int | None = Field(default=None, ge=0, le=HISTORY_MAX)
    rag: ChatRagSpec | None = None
    persona_template_id: ResourceId | None = Field(
        default=None, description="A persona prompt template (filled with 'variables'), in place of 'system_prompt'."
    )
    variables: Variables | None = Field(
        default=None, max_length=50, description="Values of the templates' {{placeholders}}."
    )
    directive_template_ids: list[ResourceId] | None = Field(
        default=None, max_length=DIRECTIVES_MAX, description="Directive templates, added to the user's message."
    )
    tools: list[ToolSelection] | None = Field(
        default=None,
        max_length=100,
        description="MCP tools the model may call: server ids (all their tools) or '<server id>/<tool>'; "
        "default: the session's 'mcp_tools'. An empty list: none.",
    )
    tool_mode: Literal["safe", "autopilot"] = Field(
        default="safe",
        description="'safe': each tool call waits for the user's approval "
        "(POST /api/sessions/{id}/tool-calls/{call_id}); 'autopilot': calls run at once.",
    )

    @model_validator(mode="after")
    def _regenerate_names_its_question(self) -> ChatTurn:
        if self.content is None and self.parent_id is None:
            raise ValueError("send 'content' (a question), or 'parent_id' of a question to regenerate its answer")
        return self

    @property
    def has_parent(self) -> bool:
        return "parent_id" in self.model_fields_set


class ToolDecision(BaseModel):
    """The user's decision on a tool call that waits for approval (a chat turn in ``safe`` tool mode)."""

    model_config = ConfigDict(extra="forbid")
    approve: bool = Field(description="true: run the call; false: the model is told the user denied it.")
