"""The one interface every deployer implements (a local process, an ECS stack); the lifecycle workflows see nothing
else.

A deployer runs one self-hosted model per model id, from a spec of its own kind (:class:`ModelSpec` subclasses:
``EcsModelSpec`` for ECS). Every operation is idempotent and may be called again after a crash: it picks up what is
already there (a half-made deployment is followed to its end, a finished one is returned, a missing one deleted is
success). Operations end in a deployment that serves, or raise :class:`DeploymentFailed` naming the step, the part
that failed and why; each has a deadline (:class:`DeploymentTimeout`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from backend.errors import UpstreamError
from backend.registry.schemas import MODEL_ID_PATTERN


class ModelSpec(BaseModel):
    """What to run for one model. Each deployer has its own subclass; only ``model_id`` is common."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str = Field(pattern=MODEL_ID_PATTERN, description="The model's id in LISA's registry.")


SpecT = TypeVar("SpecT", bound=ModelSpec)


class DeploymentState(StrEnum):
    in_progress = "in_progress"  # being created, updated or deleted (by this process or one that crashed)
    ready = "ready"  # serving at endpoint_url
    stopped = "stopped"  # exists, runs nothing (scaled to zero / process stopped); start() brings it back
    failed = "failed"  # ended in a failure; reason says why. delete() and deploy() again to retry


@dataclass(frozen=True, slots=True)
class Deployment:
    model_id: str
    state: DeploymentState
    endpoint_url: str | None  # the OpenAI-compatible base URL to register (``http://host/v1``), when known
    reference: str  # what runs it: the stack's id, a process id
    detail: str  # the deployer's own status word (``UPDATE_COMPLETE``, ``running``)
    reason: str | None = None  # why it failed or why it is in this state, when known


@dataclass(frozen=True, slots=True)
class DeploymentEvent:
    """One thing that happened to a deployment: a resource of a stack changing status, a process starting."""

    id: str  # unique within the deployment: the same event reported twice (after a resume) has the same id
    time: datetime
    resource: str  # logical resource id, or "process"
    resource_type: str
    status: str
    reason: str | None = None


# Called with each new event while an operation is followed (the workflows record them as the model's progress).
Progress = Callable[[DeploymentEvent], Awaitable[None]]


class DeploymentFailed(UpstreamError):
    """An operation ended in failure: ``step`` (create, update, stop, start, delete, outputs), the ``resource``
    that failed (None when the failure is not one resource's), and the deployer's ``reason``."""

    def __init__(self, step: str, reason: str, resource: str | None = None) -> None:
        where = f" at {resource}" if resource else ""
        super().__init__(f"{step} failed{where}: {reason}")
        self.step = step
        self.resource = resource
        self.reason = reason


MAX_LOG_LINES = 10_000  # the most lines a deployer's logs() returns


class DeploymentTimeout(DeploymentFailed):
    """An operation did not finish before its deadline; ``resource`` is what it was still waiting on."""


class Deployer(ABC, Generic[SpecT]):
    """Runs self-hosted models. Every method is safe to call again with the same arguments."""

    kind: ClassVar[str]

    @abstractmethod
    async def deploy(self, spec: SpecT, progress: Progress | None = None) -> Deployment:
        """Create the model's deployment and wait until it serves. Already there and serving: returned as it is;
        half-made (a crash mid-create): followed to its end."""

    @abstractmethod
    async def update(self, spec: SpecT, progress: Progress | None = None) -> Deployment:
        """Bring the deployment to ``spec`` and wait until it serves again. Nothing to change is success."""

    @abstractmethod
    async def stop(self, spec: SpecT, progress: Progress | None = None) -> Deployment:
        """Run nothing for the model, keeping its deployment (and its endpoint) for :meth:`start`."""

    @abstractmethod
    async def start(self, spec: SpecT, progress: Progress | None = None) -> Deployment:
        """Serve again after :meth:`stop`, as ``spec`` says."""

    @abstractmethod
    async def delete(self, model_id: str, progress: Progress | None = None) -> None:
        """Remove everything the model's deployment holds. Nothing there is success."""

    @abstractmethod
    async def status(self, model_id: str) -> Deployment | None:
        """The deployment as it is now; None when there is none."""

    @abstractmethod
    async def events(self, model_id: str, limit: int = 100) -> list[DeploymentEvent]:
        """The latest ``limit`` events of the model's deployment, oldest first; none when there is no deployment."""

    async def logs(self, model_id: str, lines: int = 100) -> str | None:
        """The last ``lines`` (1 to ``MAX_LOG_LINES``) lines of the model server's own output; None when the model
        has no deployment here. A deployer that cannot read its servers' output keeps this default."""
        return None

    async def aclose(self) -> None:  # most deployers hold nothing to close
        """Release what the deployer holds (clients, supervisors)."""
