"""Typed results of the backend's API, as the app reads them (the backend's own schemas stay in backend/).

Unknown fields are ignored, so the backend may add fields without breaking the app; fields the app relies on are
required, so a changed contract fails loudly at the edge instead of deep inside a tab.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Result(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Me(Result):
    username: str
    display_name: str | None = None
    groups: list[str] = Field(default_factory=list)
    is_admin: bool = False
    is_rag_admin: bool = False


class ModelInfo(Result):
    """A model of ``/api/models`` (the registry) or ``/v1/models`` (what the caller may call)."""

    id: str
    type: str = "textgen"
    status: str = "InService"
    streaming: bool = True


class FeatureState(Result):
    enabled: bool
    allowed: bool = True


class Banner(Result):
    enabled: bool = False
    text: str = ""
    text_color: str | None = None
    background_color: str | None = None


class Configuration(Result):
    features: dict[str, FeatureState] = Field(default_factory=dict)
    banner: Banner = Field(default_factory=Banner)
    default_model_id: str | None = None

    def allows(self, feature: str) -> bool:
        """Whether the signed-in user may use a feature (an unknown toggle counts as allowed: the backend decides)."""
        state = self.features.get(feature)
        return state is None or state.allowed


class Usage(Result):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class SessionSummary(Result):
    id: str
    title: str
    model: str | None = None
    updated_at: datetime


class SessionPage(Result):
    data: list[SessionSummary]
    next_cursor: str | None = None


class ChatArguments(Result):
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None

    def body(self) -> dict[str, Any]:
        """Only the arguments set (the backend's allowlist refuses anything else)."""
        return self.model_dump(exclude_none=True)


class Message(Result):
    id: str
    parent_id: str | None = None
    role: str
    content: str
    status: str = "complete"
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    siblings: list[str] = Field(default_factory=list)  # this message and its alternatives (same parent)
    sibling_index: int = 0


class Session(SessionSummary):
    arguments: ChatArguments | None = None
    usage: Usage = Field(default_factory=Usage)
    messages: list[Message] = Field(default_factory=list)


class PromptTemplate(Result):
    id: str
    title: str
    body: str
    kind: str
    sharing: str = "private"
    owner: str = ""
    variables: list[str] = Field(default_factory=list)
    revision: int = 1


class TemplatePage(Result):
    data: list[PromptTemplate]
    next_cursor: str | None = None
