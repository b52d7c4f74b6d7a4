"""How a workflow ends, in one transaction each: the model's end state (its status, the deployment's address, the
detected context window, its first health), the status event and the workflow's own end; or ``Failed`` with the
step and the reason. Also the events written while it runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db import tables
from backend.lifecycle import store
from backend.lifecycle.deployers import DeploymentEvent
from backend.lifecycle.schemas import EventKind, WorkflowKind, WorkflowState
from backend.registry.schemas import ModelHealth, ModelStatus
from backend.registry.service import ModelRegistry

W = tables.model_workflows


def end_status(workflow: RowMapping) -> ModelStatus:
    kind = WorkflowKind(workflow["kind"])
    if kind == WorkflowKind.disable or (kind == WorkflowKind.update and workflow["target"].get("stopped")):
        return ModelStatus.stopped
    return ModelStatus.in_service


async def lock_running(conn: AsyncConnection, workflow_id: str) -> bool:
    """Locks the workflow's row; whether it still runs (another process may have ended it meanwhile)."""
    state = await conn.scalar(sa.select(W.c.state).where(W.c.id == workflow_id).with_for_update())
    return state == WorkflowState.running.value


class Finisher:
    def __init__(self, engine: AsyncEngine, registry: ModelRegistry, health_failures: int) -> None:
        self.engine = engine
        self.registry = registry
        self.health_failures = health_failures  # a model registered unreachable counts as that many failed checks

    async def finish(self, workflow: RowMapping, step: str, data: dict[str, Any]) -> None:
        kind = WorkflowKind(workflow["kind"])
        model_id, workflow_id = str(workflow["model_id"]), str(workflow["id"])
        async with self.engine.begin() as conn:
            if not await lock_running(conn, workflow_id):
                return
            current = await self.registry.locked(conn, model_id)
            if kind == WorkflowKind.delete:
                if current is not None:
                    await self.registry.remove(conn, model_id, action="model.removed")
                message = f"delete done: model '{model_id}' and its deployment are gone"
                await store.add_event(conn, model_id, EventKind.status, message, workflow_id=workflow_id, step=step)
            elif current is None:
                message = f"{kind.value}: the model was removed while its workflow ran"
                await store.add_event(conn, model_id, EventKind.status, message, workflow_id=workflow_id, step=step)
                await store.end(conn, workflow_id, WorkflowState.failed, message)
                return
            else:
                status = end_status(workflow)
                values = self._values(workflow, status, data)
                await self.registry.write(conn, model_id, values, action="model.status", before=current)
                await store.add_event(
                    conn, model_id, EventKind.status, f"{kind.value} done: {status.value}",
                    workflow_id=workflow_id, status=status, step=step,
                )  # fmt: skip
                if values.get("health") == ModelHealth.unreachable.value:
                    await store.add_event(
                        conn, model_id, EventKind.health, f"unreachable since {values['unreachable_since']:%Y-%m-%dT%H:%M:%SZ}: "
                        f"{values['health_reason']}", workflow_id=workflow_id, status=status, step=step,
                    )  # fmt: skip
            await store.end(conn, workflow_id, WorkflowState.succeeded)
        self.registry.committed()

    def _values(self, workflow: RowMapping, status: ModelStatus, data: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        target = workflow["target"]
        values: dict[str, Any] = {"status": status.value, "status_reason": None, "updated_at": now}
        if data.get("endpoint_url"):
            values["base_url"] = str(data["endpoint_url"]).rstrip("/")
        if target.get("deployment") is not None:
            values["deployment"] = target["deployment"]
        if data.get("context_window"):
            values["context_window"] = int(data["context_window"])
        if status != ModelStatus.in_service:
            values |= {"health": ModelHealth.unknown.value, "health_reason": None, "unreachable_since": None,
                       "health_failures": 0}  # fmt: skip
        elif data.get("answered"):
            values |= {"health": ModelHealth.ok.value, "health_reason": None, "unreachable_since": None,
                       "health_failures": 0, "health_checked_at": now}  # fmt: skip
        else:
            values |= {"health": ModelHealth.unreachable.value, "unreachable_since": now, "health_checked_at": now,
                       "health_reason": data.get("unreachable_reason") or "it did not answer after its deployment",
                       "health_failures": self.health_failures}  # fmt: skip
        return values

    async def fail(self, workflow: RowMapping, step: str, reason: str) -> None:
        kind, model_id, workflow_id = str(workflow["kind"]), str(workflow["model_id"]), str(workflow["id"])
        message = store.clip(f"{kind} failed at step {step}: {reason}")
        async with self.engine.begin() as conn:
            if not await lock_running(conn, workflow_id):
                return
            current = await self.registry.locked(conn, model_id)
            if current is not None:
                values = {"status": ModelStatus.failed.value, "status_reason": message, "updated_at": datetime.now(UTC)}
                await self.registry.write(conn, model_id, values, action="model.status", before=current)
            await store.add_event(
                conn, model_id, EventKind.status, message, workflow_id=workflow_id, status=ModelStatus.failed, step=step
            )
            await store.end(conn, workflow_id, WorkflowState.failed, message)
        self.registry.committed()

    async def event(self, workflow: RowMapping, step: str, message: str) -> None:
        async with self.engine.begin() as conn:
            await store.add_event(
                conn, str(workflow["model_id"]), EventKind.step, message, workflow_id=str(workflow["id"]), step=step
            )

    async def deployment_event(self, workflow: RowMapping, step: str, event: DeploymentEvent) -> None:
        message = f"{event.resource} ({event.resource_type}): {event.status}" + (
            f": {event.reason}" if event.reason else ""
        )
        detail = {"resource": event.resource, "resource_type": event.resource_type, "status": event.status,
                  "reason": event.reason, "time": event.time.isoformat()}  # fmt: skip
        async with self.engine.begin() as conn:
            await store.add_event(
                conn, str(workflow["model_id"]), EventKind.deployment, message, workflow_id=str(workflow["id"]),
                step=step, detail=detail, source_id=event.id,
            )  # fmt: skip
