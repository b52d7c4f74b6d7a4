"""Schema family of a registered model: create, update, public view, and the routing view the gateway uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

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


class ModelHealth(StrEnum):
    """What the health checks last found (backend/lifecycle/health.py); never a lifecycle state."""

    ok = "ok"
    unreachable = "unreachable"  # stopped answering: the gateway answers 503 at once
    unknown = "unknown"  # not checked yet, or not checked at all (third-party models, models not in service)


GroupName = Annotated[Text, Field(min_length=1, max_length=256)]
DeployerKind = Literal["local", "ecs"]  # backend/lifecycle/deployers.KINDS
# The last path segment of these ids would read as a route of the model (/api/models/{id}/events, ...).
RESERVED_ID_ENDINGS = ("/events", "/enable", "/disable", "/logs", "/schedule")


class DeploymentRequest(BaseModel):
    """A self-hosted model LISA deploys: which deployer runs it, and the deployer's spec."""

    model_config = ConfigDict(extra="forbid")

    deployer: DeployerKind = Field(description="'local' (a process on this machine) or 'ecs' (a CloudFormation stack).")
    spec: dict[str, Any] = Field(
        default_factory=dict,
        description="The deployer's spec (for ecs: engine, instance_type, weights, autoscaling, ...); its model_id "
        "is the model's id.",
    )


class DeploymentChange(BaseModel):
    """Fields of a deployed model's spec to change; the others keep their values."""

    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] = Field(description="Top-level spec fields to replace (a nested object is replaced whole).")


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
    deployment: DeploymentRequest | None = Field(
        default=None,
        description="Deploy the model (hosting internal, no base_url): LISA runs it and registers its address. "
        "The answer is then 202 with the workflow that creates it.",
    )

    @field_validator("id")
    @classmethod
    def _not_a_route(cls, value: str) -> str:
        if value.endswith(RESERVED_ID_ENDINGS):
            raise ValueError(f"a model id may not end with {', '.join(RESERVED_ID_ENDINGS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelCreate:
        if self.deployment is not None:
            if self.hosting != Hosting.internal:
                raise ValueError("a deployed model is hosted internally: set hosting to 'internal'")
            if self.base_url is not None:
                raise ValueError("a deployed model's base_url comes from its deployment: leave base_url out")
        check_consistency(
            self.type, self.hosting, self.provider_model, self.base_url, self.streaming, self.deployment is not None
        )
        return self


class ModelUpdate(_ModelFields):
    type: ModelType | None = None
    hosting: Hosting | None = None
    deployment: DeploymentChange | None = Field(
        default=None,
        description="Change a deployed model's spec: answered 202 with the workflow that updates the deployment.",
    )


def check_consistency(
    type_: ModelType,
    hosting: Hosting,
    provider_model: str | None,
    base_url: object,
    streaming: bool | None,
    deployed: bool = False,
) -> None:
    if type_ == ModelType.embedding and streaming:
        raise ValueError("embedding models cannot stream: set streaming to false")
    if hosting == Hosting.third_party and not provider_model:
        raise ValueError("third_party models need provider_model (a LiteLLM model string such as 'bedrock/...')")
    if hosting == Hosting.internal and not base_url and not deployed:
        raise ValueError("internal models need base_url (an OpenAI-compatible server, e.g. http://host:8000/v1)")


class ModelDeployment(BaseModel):
    deployer: str
    spec: dict[str, Any] = Field(description="The deployed spec; container environment values are masked.")


class ModelPublic(BaseModel):
    """provider_model, base_url, upstream_model, has_api_key, managed_by, deployment, status_reason and
    health_reason are null for non-admins: where a model runs and how it is reached is infrastructure."""

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
    status_reason: str | None = Field(description="Why the model is Failed: the workflow, its step and the reason.")
    health: ModelHealth
    unreachable_since: datetime | None = Field(description="Set while health is 'unreachable'.")
    health_reason: str | None
    managed_by: str | None
    deployment: ModelDeployment | None
    created_at: datetime
    updated_at: datetime


class ModelPage(Page[ModelPublic]):
    pass


SERVING = frozenset({ModelStatus.in_service, ModelStatus.updating})


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
    health: ModelHealth = ModelHealth.unknown
    unreachable_since: datetime | None = None

    @property
    def serving(self) -> bool:
        """Listed by /v1/models and routed: InService, or Updating (its current deployment serves until the update
        ends). Creating, Starting, Stopping, Stopped, Deleting and Failed models are neither."""
        return self.status in SERVING

    def not_serving(self) -> str | None:
        """Why the model is neither listed nor routed (its status); None while it serves."""
        if self.serving:
            return None
        return f"model '{self.id}' is not in service (status: {self.status.value}); it cannot be used until it is"

    def unavailable(self) -> str | None:
        """Why requests to the model are answered 503 at once (not serving, or not answering); None: route."""
        if (why := self.not_serving()) is not None:
            return why
        if self.health == ModelHealth.unreachable:
            since = self.unreachable_since.isoformat(timespec="seconds") if self.unreachable_since else "recently"
            return f"model '{self.id}' is not answering (unreachable since {since}); retry later"
        return None
