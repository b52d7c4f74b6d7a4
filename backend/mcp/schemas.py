"""Schema family of an MCP server registration (create, update, public view) and of its tools and tool results.

Header and environment values are secrets: they come in as ``SecretText``, are stored sealed, and only their names
(``header_names``, ``env_names``) and ``has_headers`` / ``has_env`` ever go out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from backend.paging import Page
from backend.text import SecretText, Text

MAX_HEADERS = 32
MAX_ENV = 64
MAX_ARGS = 64
MAX_ALLOWED_TOOLS = 500
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"  # an HTTP field name (RFC 9110 token)
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# Headers the MCP transport or HTTP itself sets: a registration may not override them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "accept",
        "connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    }
)

GroupName = Annotated[Text, Field(min_length=1, max_length=256)]
HeaderName = Annotated[str, Field(pattern=HEADER_NAME_PATTERN)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]
ToolName = Annotated[Text, Field(min_length=1, max_length=128)]
Argument = Annotated[Text, Field(max_length=4096)]


class Transport(StrEnum):
    streamable_http = "streamable_http"
    stdio = "stdio"


class Scope(StrEnum):
    global_ = "global"
    personal = "personal"


def _check_headers(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return value
    lowered = [name.lower() for name in value]
    reserved = sorted(set(lowered) & RESERVED_HEADERS)
    if reserved:
        raise ValueError(f"headers the MCP transport sets itself cannot be configured: {', '.join(reserved)}")
    if len(set(lowered)) != len(lowered):
        raise ValueError("a header name is given twice (names are case-insensitive)")
    for name, secret in value.items():
        text = secret.get_secret_value()
        if len(text) > 8192 or not all(" " <= c <= "~" or c == "\t" for c in text):
            raise ValueError(f"header {name!r}: a value must be one line of printable ASCII, at most 8192 characters")
    return value


def _check_env(value: dict[str, Any] | None) -> dict[str, Any] | None:
    for name, secret in (value or {}).items():
        if len(secret.get_secret_value()) > 32_768:
            raise ValueError(f"environment variable {name!r}: at most 32768 characters")
    return value


class _ServerFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=64, description="Display name.")
    description: Text | None = Field(default=None, max_length=2000)
    url: AnyHttpUrl | None = Field(
        default=None, description="streamable_http: the MCP endpoint, e.g. https://host/mcp (passes the egress guard)."
    )
    headers: dict[HeaderName, SecretText] | None = Field(
        default=None,
        max_length=MAX_HEADERS,
        description="streamable_http: headers sent with every request (e.g. Authorization); stored encrypted, never "
        "returned. On update, the whole set is replaced (null: none).",
    )
    command: Text | None = Field(
        default=None, min_length=1, max_length=1024, description="stdio (admins only): the executable LISA runs."
    )
    args: list[Argument] | None = Field(default=None, max_length=MAX_ARGS, description="stdio: its arguments.")
    env: dict[EnvName, SecretText] | None = Field(
        default=None,
        max_length=MAX_ENV,
        description="stdio: environment variables of the process (beside PATH, HOME and a few basics); stored "
        "encrypted, never returned. On update, the whole set is replaced (null: none).",
    )
    allowed_groups: list[GroupName] | None = Field(
        default=None, max_length=100, description="Global servers: the groups that may use it (empty: everyone)."
    )
    enabled: bool | None = None
    tools_allowed: list[ToolName] | None = Field(
        default=None,
        max_length=MAX_ALLOWED_TOOLS,
        description="The tools users may use; null (or empty) for all of the server's tools.",
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_headers(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _check_env(value)


class McpServerCreate(_ServerFields):
    name: Text = Field(min_length=1, max_length=64, description="Display name.")
    transport: Transport
    scope: Scope = Field(
        default=Scope.personal,
        description="global: registered by an admin for everyone its allowed_groups name; personal: only yours.",
    )


class McpServerUpdate(_ServerFields):
    pass


class ProcessStatus(BaseModel):
    """A stdio server's process as this backend process runs it (each backend process runs its own)."""

    state: str = Field(description="starting, running, restarting or stopped.")
    restarts: int = Field(description="How often it was started again after it ended.")
    started_at: datetime | None
    last_error: str | None = Field(description="Why it last ended or failed to start (kept once it runs again).")


class McpServerPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str
    scope: Scope
    owner: str | None = Field(description="The user of a personal server; null for global servers.")
    transport: Transport
    url: str | None
    header_names: list[str] = Field(description="The names of the configured headers; their values are never shown.")
    has_headers: bool
    command: str | None = Field(description="stdio: shown to admins only.")
    args: list[str] | None = Field(description="stdio: shown to admins only.")
    env_names: list[str] = Field(description="The names of the configured environment variables, never values.")
    has_env: bool
    allowed_groups: list[str]
    enabled: bool
    tools_allowed: list[str] | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    process: ProcessStatus | None = Field(
        default=None, description="stdio, admins only: the hosted process in the backend process that answered."
    )


class McpServerPage(Page[McpServerPublic]):
    pass


class McpTool(BaseModel):
    server_id: str
    server_name: str
    name: str
    description: str
    input_schema: dict[str, Any]


class McpServerError(BaseModel):
    server_id: str
    server_name: str
    error: str


class McpToolList(BaseModel):
    """What a caller may use, and the servers that could not be reached (they do not fail the whole list)."""

    tools: list[McpTool]
    errors: list[McpServerError]


class McpServerTool(McpTool):
    allowed: bool = Field(description="Whether tools_allowed lets users use it.")


class McpServerToolList(BaseModel):
    tools: list[McpServerTool]
    error: str | None = Field(description="Why the server's tools could not be listed (then tools is empty).")


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's arguments (its input_schema).")
    timeout_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="A shorter time limit than the server's (LISA_MCP_CALL_TIMEOUT)."
    )


class ToolResultPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    text: str = Field(description="The text of the result's content, joined; cut at the output limit.")
    is_error: bool = Field(description="The tool reported a failure (its text says what).")
    content: list[dict[str, Any]] = Field(description="The result's content items as MCP returned them (bounded).")
    structured_content: Any = Field(default=None, description="The tool's structured result, when it gives one.")
    truncated: bool = Field(description="Whether the output was cut to the size limit.")


@dataclass(frozen=True, slots=True)
class ToolResult:
    """One tool call's outcome, as the chat's tool loop uses it."""

    text: str
    is_error: bool
    content: list[dict[str, Any]] = field(default_factory=list)
    structured_content: Any = None
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class ToolRef:
    """Where an OpenAI function name leads: a server and one of its tools."""

    server_id: str
    tool: str
