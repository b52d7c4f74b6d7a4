"""What the lifecycle API answers: workflows, a model's events, and the 202 that points to a started workflow."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from backend.paging import Page
from backend.registry.schemas import ModelPublic, ModelStatus


class WorkflowKind(StrEnum):
    create = "create"
    update = "update"
    enable = "enable"
    disable = "disable"
    delete = "delete"


class WorkflowState(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class EventKind(StrEnum):
    status = "status"  # the model's status changed (a workflow started or ended, an admin's enable or disable)
    step = "step"  # a workflow's step started, was resumed, finished or failed
    deployment = "deployment"  # the deployment's own event (a stack resource changing, a process starting)
    health = "health"  # the model stopped answering, or answers again


class WorkflowPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    model_id: str
    kind: WorkflowKind
    state: WorkflowState
    deployer: str
    step: str | None = Field(description="The step started last.")
    step_started_at: datetime | None
    step_deadline_at: datetime | None = Field(description="When the running step fails if it has not finished.")
    error: str | None = Field(description="Why it failed: the step and the reason.")
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class ModelEvent(BaseModel):
    id: str
    model_id: str
    workflow_id: str | None
    at: datetime
    kind: EventKind
    status: ModelStatus | None = Field(description="The model's status after the event, where it says.")
    step: str | None
    message: str
    detail: dict[str, Any] | None


class ModelEventPage(Page[ModelEvent]):
    pass


class WorkflowAccepted(BaseModel):
    """A workflow was started: the model as it is now, the workflow, and where its progress is read."""

    model: ModelPublic
    workflow: WorkflowPublic
    events_url: str = Field(description="GET it for the model's events (paged, oldest first).")
