"""Schema family of an assistant stack: create, update, public view, and what a chat session takes from one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from backend.paging import Page
from backend.partial_update import PartialUpdate
from backend.prompts.placeholders import fill
from backend.prompts.schemas import MAX_BODY_CHARS, TEMPLATE_ID_PATTERN
from backend.rag.schemas import RESOURCE_ID
from backend.registry.schemas import MODEL_ID_PATTERN, GroupName
from backend.text import Text

# "server_id/tool_name": an MCP server's id in LISA's registry, then the tool's name as that server lists it
# (MCP tool names are 1-128 of letters, digits, '_', '-', '.').
MCP_TOOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}/[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
MAX_DIRECTIVES = 20
MAX_COLLECTIONS = 20
MAX_TOOLS = 100
MAX_GROUPS = 100

McpTool = Annotated[str, StringConstraints(pattern=MCP_TOOL_PATTERN)]
StopWord = Annotated[Text, Field(min_length=1, max_length=256)]


class ModelArguments(BaseModel):
    """The default model arguments of an assistant: an allowlist, each within bounds (anything else: 422)."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stop: list[StopWord] | None = Field(default=None, max_length=4)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


class TemplateRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_id: str = Field(pattern=TEMPLATE_ID_PATTERN)
    revision: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="The revision to keep; default: the current one."
    )


class TemplatePin(BaseModel):
    template_id: str
    revision: int = Field(description="The revision the assistant uses, whatever the template's owner does later.")


class PersonaSpec(BaseModel):
    """A prompt template of kind 'persona' (``template_id``, optionally ``revision``), or the ``text`` itself."""

    model_config = ConfigDict(extra="forbid")

    template_id: str | None = Field(default=None, pattern=TEMPLATE_ID_PATTERN)
    revision: int | None = Field(default=None, ge=1, le=2**31 - 1)
    text: Text | None = Field(default=None, min_length=1, max_length=MAX_BODY_CHARS)

    @model_validator(mode="after")
    def _one_source(self) -> PersonaSpec:
        if (self.template_id is None) == (self.text is None):
            raise ValueError("a persona is either 'template_id' (a persona template) or 'text', exactly one")
        if self.revision is not None and self.template_id is None:
            raise ValueError("'revision' goes with 'template_id'")
        return self


class PersonaPublic(BaseModel):
    template_id: str | None = None
    revision: int | None = None
    text: str | None = None


class CollectionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repository_id: str = Field(pattern=RESOURCE_ID)
    collection_id: str = Field(pattern=RESOURCE_ID)


def _no_duplicates(values: list[Any]) -> None:
    seen: set[Any] = set()
    for value in values:
        key = value
        if isinstance(value, TemplateRef):
            key = value.template_id
        elif isinstance(value, CollectionSpec):
            key = f"{value.repository_id}/{value.collection_id}"
        if key in seen:
            raise ValueError(f"'{key}' is listed twice")
        seen.add(key)


Name = Annotated[Text, Field(min_length=1, max_length=256, description="Unique among assistants.")]
Description = Annotated[Text, Field(max_length=2000)]
ModelId = Annotated[str, Field(pattern=MODEL_ID_PATTERN, description="A registered textgen model.")]
Directives = Annotated[list[TemplateRef], Field(max_length=MAX_DIRECTIVES, description="Directive templates.")]
Collections = Annotated[list[CollectionSpec], Field(max_length=MAX_COLLECTIONS, description="RAG collections.")]
McpTools = Annotated[list[McpTool], Field(max_length=MAX_TOOLS, description="'server_id/tool_name' of MCP tools.")]
AllowedGroups = Annotated[list[GroupName], Field(max_length=MAX_GROUPS, description="Who may use it; empty: all.")]


class _AssistantFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("directives", "collections", "mcp_tools", check_fields=False)
    @classmethod
    def _unique(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None:
            _no_duplicates(value)
        return value


class AssistantCreate(_AssistantFields):
    name: Name
    description: Description = ""
    model_id: ModelId
    model_args: ModelArguments = Field(default_factory=ModelArguments)
    persona: PersonaSpec | None = None
    directives: Directives = Field(default_factory=list)
    collections: Collections = Field(default_factory=list)
    mcp_tools: McpTools = Field(default_factory=list)
    allowed_groups: AllowedGroups = Field(default_factory=list)


class AssistantUpdate(PartialUpdate, _AssistantFields):
    """Only the fields sent change; a list or ``model_args`` sent replaces the old one whole. ``persona: null``
    removes the persona; any other field cannot be null."""

    name: Name | None = None
    description: Description | None = None
    model_id: ModelId | None = None
    model_args: ModelArguments | None = None
    persona: PersonaSpec | None = None
    directives: Directives | None = None
    collections: Collections | None = None
    mcp_tools: McpTools | None = None
    allowed_groups: AllowedGroups | None = None

    NULLABLE = frozenset({"persona"})


class AssistantPublic(BaseModel):
    id: str
    name: str
    description: str
    model_id: str
    model_args: ModelArguments
    persona: PersonaPublic | None
    directives: list[TemplatePin]
    collections: list[CollectionSpec]
    mcp_tools: list[str]
    allowed_groups: list[str]
    created_by: str
    updated_by: str
    created_at: datetime
    updated_at: datetime


class AssistantPage(Page[AssistantPublic]):
    pass


@dataclass(frozen=True, slots=True)
class ResolvedPrompt:
    """A persona or directive as an assistant uses it: the text of its pinned revision (or the inline text)."""

    text: str
    variables: tuple[str, ...]  # its {{placeholders}}; fill them with ``filled``
    template_id: str | None = None  # None: inline text
    revision: int | None = None

    def filled(self, values: Mapping[str, str]) -> str:
        """The text with its placeholders filled (400 naming every missing or unknown variable)."""
        return fill(self.text, values)


@dataclass(frozen=True, slots=True)
class ResolvedAssistant:
    """Everything a chat session takes from an assistant (``AssistantService.resolve``)."""

    id: str
    name: str
    model_id: str
    model_args: dict[str, Any]  # only the arguments set (max_tokens, temperature, top_p, stop, seed)
    persona: ResolvedPrompt | None  # the system prompt
    directives: tuple[ResolvedPrompt, ...]  # added to the user's message, in this order
    collections: tuple[CollectionSpec, ...]  # RAG: searched as the user (RAG's own access rules apply)
    mcp_tools: tuple[str, ...]  # "server_id/tool_name"
