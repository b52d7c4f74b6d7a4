"""Schema family of a registered model: create, update, public view, and the routing view the gateway uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from backend.paging import Page
from backend.text import SecretText, Text

MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$"


class ModelType(StrEnum):
    textgen = "textgen"
    embedding = "embedding"
    imagegen = "imagegen"


class Hosting(StrEnum):
    third_party = "third_party"
    internal = "internal"


class Feature(StrEnum):
    tool_calls = "tool_calls"
    image_input = "image_input"
    summarization = "summarization"
    reasoning = "reasoning"


class ModelStatus(StrEnum):
    creating = "Creating"
    in_service = "InService"
    stopping = "Stopping"
    stopped = "Stopped"
    starting = "Starting"
    updating = "Updating"
    deleting = "Deleting"
    failed = "Failed"


GroupName = Annotated[Text, Field(min_length=1, max_length=256)]


class _ModelFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, max_length=256, description="Display name; defaults to the id.")
    provider_model: Text | None = Field(
        default=None,
        max_length=512,
        description="LiteLLM model string for third_party hosting, e.g. 'bedrock/anthropic.claude-3-haiku'.",
    )
    base_url: AnyHttpUrl | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible server (internal), e.g. http://host:8000/v1.",
    )
    upstream_model: Text | None = Field(
        default=None, max_length=512, description="Model name sent upstream when it differs from the id."
    )
    api_key: SecretText | None = Field(
        default=None, description="Upstream credential; stored encrypted, never returned."
    )
    allowed_groups: list[GroupName] | None = None
    features: list[Feature] | None = None
    streaming: bool | None = None
    context_window: int | None = Field(default=None, ge=1, le=100_000_000)
    # Not part of the document: the model lifecycle sets a model's status, clients never do (refused, 422).
    status: SkipJsonSchema[object] = Field(default=None, exclude=True)

    @field_validator("status", mode="before")
    @classmethod
    def _status_belongs_to_the_lifecycle(cls, _value: object) -> None:
        raise ValueError("a model's status is set by its lifecycle (start, stop, failure), not by a request")


class ModelCreate(_ModelFields):
    id: str = Field(pattern=MODEL_ID_PATTERN)
    type: ModelType
    hosting: Hosting

    @model_validator(mode="after")
    def _consistent(self) -> ModelCreate:
        check_consistency(self.type, self.hosting, self.provider_model, self.base_url, self.streaming)
        return self


class ModelUpdate(_ModelFields):
    type: ModelType | None = None
    hosting: Hosting | None = None


def check_consistency(
    type_: ModelType, hosting: Hosting, provider_model: str | None, base_url: object, streaming: bool | None
) -> None:
    if type_ == ModelType.embedding and streaming:
        raise ValueError("embedding models cannot stream: set streaming to false")
    if hosting == Hosting.third_party and not provider_model:
        raise ValueError("third_party models need provider_model (a LiteLLM model string such as 'bedrock/...')")
    if hosting == Hosting.internal and not base_url:
        raise ValueError("internal models need base_url (an OpenAI-compatible server, e.g. http://host:8000/v1)")


class ModelPublic(BaseModel):
    """provider_model, base_url, upstream_model, has_api_key and managed_by are null for non-admins: where a model
    runs and how it is reached is infrastructure."""

    id: str
    name: str
    type: ModelType
    hosting: Hosting
    provider_model: str | None
    base_url: str | None
    upstream_model: str | None
    has_api_key: bool | None
    allowed_groups: list[str]
    features: list[Feature]
    streaming: bool
    context_window: int | None
    status: ModelStatus
    managed_by: str | None
    created_at: datetime
    updated_at: datetime


class ModelPage(Page[ModelPublic]):
    pass


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """What the gateway needs to route one request; api_key is decrypted, so this never leaves the process."""

    id: str
    type: ModelType
    hosting: Hosting
    provider_model: str | None
    base_url: str | None
    upstream_model: str | None
    api_key: str | None
    allowed_groups: tuple[str, ...]
    streaming: bool
    status: ModelStatus
    created: int
    context_window: int | None = None  # tokens, where the registry knows it (limits cap max_tokens by it)
