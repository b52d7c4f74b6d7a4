"""The state rules of a model's lifecycle: which status each action starts from, what it moves through, where it ends.

Every model follows them, deployed or not; only the lifecycle (its workflows, and the direct enable/disable of models
LISA does not deploy) changes a model's status."""

from __future__ import annotations

from backend.errors import Conflict
from backend.lifecycle.schemas import WorkflowKind
from backend.registry.schemas import ModelStatus

S = ModelStatus
ALLOWED_FROM: dict[WorkflowKind, tuple[ModelStatus, ...]] = {
    WorkflowKind.update: (S.in_service, S.stopped),
    WorkflowKind.enable: (S.stopped,),
    WorkflowKind.disable: (S.in_service,),
    WorkflowKind.delete: (S.in_service, S.stopped, S.failed),
}
# The status a workflow holds the model in while it runs.
DURING: dict[WorkflowKind, ModelStatus] = {
    WorkflowKind.create: S.creating,
    WorkflowKind.update: S.updating,
    WorkflowKind.enable: S.starting,
    WorkflowKind.disable: S.stopping,
    WorkflowKind.delete: S.deleting,
}
TRANSITIONAL = frozenset(DURING.values())


def require(kind: WorkflowKind, model_id: str, status: str) -> ModelStatus:
    """The model's status when ``kind`` may start from it; else 409 naming the status and what the action needs."""
    current = ModelStatus(status)
    allowed = ALLOWED_FROM[kind]
    if current in allowed:
        return current
    needs = " or ".join(s.value for s in allowed)
    why = f"model '{model_id}' is {current.value}: {kind.value} needs it {needs}"
    if current in TRANSITIONAL:
        why += f" (a workflow is running; its progress: /api/models/{model_id}/events)"
    elif current == S.failed:
        why += " (a failed model can be deleted, then created again)"
    raise Conflict(why)
