"""The lifecycle as the API sees it: create, update, enable, disable and delete of models, under the state rules.

A model LISA deploys (``deployment`` given at create) changes through workflows: the request checks what it can,
records the model's new status, the workflow and an event in one transaction, queues the workflow and answers 202
with it. Other models (third-party, or an internal server at a given URL) are written at once, under the same rules,
with the same events and audit. Deleting a model that a repository, collection, pipeline or assistant uses is refused.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.auth.principal import Principal
from backend.errors import BadRequest, NotFound
from backend.lifecycle import rules, store, usage
from backend.lifecycle.deployments import Deployers
from backend.lifecycle.probe import Probe
from backend.lifecycle.schemas import EventKind, ModelEventPage, WorkflowAccepted, WorkflowKind, WorkflowPublic
from backend.lifecycle.worker import LifecycleWorker
from backend.paging import PageParams
from backend.registry.schemas import Hosting, ModelCreate, ModelHealth, ModelPublic, ModelStatus, ModelUpdate
from backend.registry.service import ModelRegistry, to_public
from backend.runtime.local_models import MANAGED_BY as BUNDLED

log = logging.getLogger("lisa.lifecycle")


def events_url(model_id: str) -> str:
    return f"/api/models/{model_id}/events"


def accepted(model: ModelPublic, workflow: RowMapping) -> WorkflowAccepted:
    return WorkflowAccepted(
        model=model, workflow=WorkflowPublic.model_validate(dict(workflow)), events_url=events_url(model.id)
    )


class LifecycleService:
    def __init__(
        self,
        engine: AsyncEngine,
        registry: ModelRegistry,
        deployers: Deployers,
        probe: Probe,
        worker: LifecycleWorker,
        health_failures: int,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.deployers = deployers
        self.probe = probe
        self.worker = worker
        self.health_failures = health_failures

    # --- create ----------------------------------------------------------------------------------------------------
    async def create(self, data: ModelCreate, actor: Principal) -> ModelPublic | WorkflowAccepted:
        if data.deployment is None:
            return await self._register(data, actor)
        kind = data.deployment.deployer
        spec = self.deployers.spec(kind, data.id, data.deployment.spec).model_dump(mode="json")
        deployment = {"deployer": kind, "spec": spec}
        target = {"spec": spec, "deployment": deployment, "served_name": data.upstream_model}
        started: list[RowMapping] = []

        async def start(conn: AsyncConnection, row: RowMapping) -> None:
            started.append(await self._start(conn, row, WorkflowKind.create, kind, target, actor))

        model = await self.registry.create(
            data, actor=actor, status=ModelStatus.creating, deployment=deployment, within=start
        )
        return await self._queued(model, started[0])

    async def _register(self, data: ModelCreate, actor: Principal) -> ModelPublic:
        """A model LISA does not deploy, registered at once; an internal server's context window, where the server
        says it, replaces the given one."""
        if data.hosting == Hosting.internal and data.base_url is not None:
            detected = await self.probe.context_window(str(data.base_url), data.upstream_model or data.id)
            if detected:
                data = data.model_copy(update={"context_window": detected})

        async def registered(conn: AsyncConnection, row: RowMapping) -> None:
            await store.add_event(
                conn, row["id"], EventKind.status, "registered: InService", status=ModelStatus.in_service
            )

        return await self.registry.create(data, actor=actor, within=registered)

    # --- update ----------------------------------------------------------------------------------------------------
    async def update(self, model_id: str, data: ModelUpdate, actor: Principal) -> ModelPublic | WorkflowAccepted:
        row = await self._row(model_id)
        deployed = row["deployment"] is not None
        if deployed and "base_url" in data.model_fields_set:
            raise BadRequest(f"model '{model_id}' is deployed by LISA: its base_url comes from its deployment")
        if deployed and data.hosting not in (None, Hosting.internal):
            raise BadRequest(f"model '{model_id}' is deployed by LISA: its hosting stays internal")
        if data.deployment is None:

            async def allowed(_conn: AsyncConnection, current: RowMapping) -> None:
                rules.require(WorkflowKind.update, model_id, current["status"])

            return await self.registry.update(model_id, data, actor=actor, within=allowed)
        if not deployed:
            raise BadRequest(f"model '{model_id}' is not deployed by LISA: it has no deployment to change")
        kind = str(row["deployment"]["deployer"])
        fields = {**row["deployment"]["spec"], **data.deployment.spec}
        spec = self.deployers.spec(kind, model_id, fields).model_dump(mode="json")
        started: list[RowMapping] = []

        async def start(conn: AsyncConnection, current: RowMapping) -> None:
            previous = rules.require(WorkflowKind.update, model_id, current["status"])
            served = data.upstream_model if "upstream_model" in data.model_fields_set else current["upstream_model"]
            target = {"spec": spec, "deployment": {"deployer": kind, "spec": spec}, "served_name": served,
                      "stopped": previous == ModelStatus.stopped}  # fmt: skip
            started.append(await self._start(conn, current, WorkflowKind.update, kind, target, actor))

        fields_only = data.model_copy(update={"deployment": None})
        model = await self.registry.update(
            model_id, fields_only, actor=actor, status=ModelStatus.updating, within=start
        )
        return await self._queued(model, started[0])

    # --- enable, disable -------------------------------------------------------------------------------------------
    async def enable(
        self, model_id: str, actor: Principal, reason: str | None = None
    ) -> ModelPublic | WorkflowAccepted:
        """``reason`` (a schedule's, say) goes into the event and the audit entry."""
        return await self._switch(WorkflowKind.enable, model_id, actor, reason)

    async def disable(
        self, model_id: str, actor: Principal, reason: str | None = None
    ) -> ModelPublic | WorkflowAccepted:
        return await self._switch(WorkflowKind.disable, model_id, actor, reason)

    async def _switch(
        self, kind: WorkflowKind, model_id: str, actor: Principal, reason: str | None
    ) -> ModelPublic | WorkflowAccepted:
        """Disabling takes the model out of the gateway's routes at once (its status leaves InService on commit);
        enabling a model LISA does not deploy checks that it answers first (else it is marked unreachable). A bundled
        model's server is started and stopped by `lisa serve` itself once its status changes (backend/runtime/
        bundled.py): enabled, it has not started yet, so it is not probed (its health is unknown until checked)."""
        row = await self._row(model_id)
        why: str | None = None
        bundled = row["managed_by"] == BUNDLED
        if kind == WorkflowKind.enable and row["deployment"] is None and row["hosting"] == Hosting.internal.value \
                and not bundled:  # fmt: skip
            why = await self.probe.not_answering(str(row["base_url"]))
        workflow: RowMapping | None = None
        async with self.engine.begin() as conn:
            current = await self._locked(conn, model_id)
            rules.require(kind, model_id, current["status"])
            if current["deployment"] is not None:
                deployer = str(current["deployment"]["deployer"])
                workflow = await self._start(
                    conn, current, kind, deployer, {"spec": current["deployment"]["spec"]}, actor, reason
                )
                after = await self._status(conn, current, rules.DURING[kind], actor, f"model.{kind.value}", reason)
            else:
                status = ModelStatus.in_service if kind == WorkflowKind.enable else ModelStatus.stopped
                after = await self._status(conn, current, status, actor, f"model.{kind.value}", reason, why)
                message = f"{kind.value}d: {status.value}" + (f" ({reason})" if reason else "")
                await store.add_event(conn, model_id, EventKind.status, message, status=status)
                if why is not None:
                    message = f"unreachable since {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}: {why}"
                    await store.add_event(conn, model_id, EventKind.health, message, status=status)
        self.registry.committed()
        model = to_public(after)
        return model if workflow is None else await self._queued(model, workflow)

    async def _status(
        self,
        conn: AsyncConnection,
        current: RowMapping,
        status: ModelStatus,
        actor: Principal,
        action: str,
        reason: str | None = None,
        unreachable: str | None = None,
    ) -> RowMapping:
        now = datetime.now(UTC)
        values: dict[str, Any] = {"status": status.value, "status_reason": None, "updated_at": now}
        if (
            status != ModelStatus.in_service
            or current["hosting"] != Hosting.internal.value
            or current["managed_by"] == BUNDLED
        ):
            values |= {"health": ModelHealth.unknown.value, "health_reason": None, "unreachable_since": None,
                       "health_failures": 0}  # fmt: skip
        elif current["deployment"] is None:  # enabled now: as its probe found it
            healthy = unreachable is None
            values |= {
                "health": (ModelHealth.ok if healthy else ModelHealth.unreachable).value,
                "health_reason": unreachable, "unreachable_since": None if healthy else now, "health_checked_at": now,
                "health_failures": 0 if healthy else self.health_failures,
            }  # fmt: skip
        after = await self.registry.write(
            conn, current["id"], values, action=action, actor=actor, before=current, reason=reason
        )
        assert after is not None  # the row is locked
        return after

    # --- delete ----------------------------------------------------------------------------------------------------
    async def delete(self, model_id: str, actor: Principal) -> WorkflowAccepted | None:
        """None: deleted at once (a model LISA does not deploy)."""
        row = await self._row(model_id)
        if row["deployment"] is None:

            async def allowed(conn: AsyncConnection, current: RowMapping) -> None:
                rules.require(WorkflowKind.delete, model_id, current["status"])
                await usage.refuse_if_used(conn, model_id)
                await store.add_event(conn, model_id, EventKind.status, "deleted")

            await self.registry.delete(model_id, actor=actor, within=allowed)
            return None
        async with self.engine.begin() as conn:
            current = await self._locked(conn, model_id)
            rules.require(WorkflowKind.delete, model_id, current["status"])
            await usage.refuse_if_used(conn, model_id)
            deployer = str(current["deployment"]["deployer"])
            workflow = await self._start(conn, current, WorkflowKind.delete, deployer, {}, actor)
            after = await self._status(conn, current, ModelStatus.deleting, actor, "model.delete")
        self.registry.committed()
        return await self._queued(to_public(after), workflow)

    # --- events ----------------------------------------------------------------------------------------------------
    async def events(self, model_id: str, params: PageParams) -> ModelEventPage:
        """A deleted model's events stay readable (what happened to it is the point of them)."""
        if await self.registry.row(model_id) is None and not await store.has_events(self.engine, model_id):
            raise NotFound(f"model '{model_id}' not found")
        return await store.events_page(self.engine, model_id, params)

    # --- logs ------------------------------------------------------------------------------------------------------
    async def logs(self, model_id: str, lines: int) -> str:
        """The last ``lines`` lines of the model server's output, read by its deployer (a local process's log file,
        an ECS model's CloudWatch log group); 404 for a model LISA does not deploy or whose deployment is gone."""
        row = await self._row(model_id)
        if row["deployment"] is None:
            raise NotFound(f"model '{model_id}' is not deployed by LISA: it has no logs here")
        kind = str(row["deployment"]["deployer"])
        text = await self.deployers.get(kind).logs(model_id, lines)
        if text is None:
            raise NotFound(f"model '{model_id}' has no {kind} deployment now: it has no logs")
        return text

    # --- parts -----------------------------------------------------------------------------------------------------
    async def _row(self, model_id: str) -> RowMapping:
        row = await self.registry.row(model_id)
        if row is None:
            raise NotFound(f"model '{model_id}' not found")
        return row

    async def _locked(self, conn: AsyncConnection, model_id: str) -> RowMapping:
        row = await self.registry.locked(conn, model_id)
        if row is None:
            raise NotFound(f"model '{model_id}' not found")
        return row

    async def _start(
        self,
        conn: AsyncConnection,
        model: RowMapping,
        kind: WorkflowKind,
        deployer: str,
        target: dict[str, Any],
        actor: Principal,
        reason: str | None = None,
    ) -> RowMapping:
        self.deployers.get(deployer)  # 400 now when this server cannot run it
        workflow = await store.start_workflow(conn, model["id"], kind, deployer, target, actor)
        status = rules.DURING[kind]
        message = f"{kind.value} started by {actor.username}: {status.value}" + (f" ({reason})" if reason else "")
        await store.add_event(conn, model["id"], EventKind.status, message, workflow_id=workflow["id"], status=status)
        return workflow

    async def _queued(self, model: ModelPublic, workflow: RowMapping) -> WorkflowAccepted:
        try:
            await self.worker.defer(str(workflow["id"]), model.id)
        except Exception as exc:  # recorded as running: the worker's resume queues it
            log.warning("workflow %s not queued now (%s); the worker's resume will queue it", workflow["id"], exc)
        return accepted(model, workflow)


class AutomaticActions:
    """The lifecycle as something that starts and stops models on its own sees it (a schedule: the
    ``LifecycleActions`` protocol): enable and disable as ``who``, returning once the change is made or its workflow
    queued; 409 (``Conflict``) for a model in any other state than the action needs."""

    def __init__(self, service: LifecycleService, who: str = "schedule") -> None:
        self.service = service
        self.principal = Principal(username=who, groups=frozenset(), is_admin=True)

    async def enable(self, model_id: str, reason: str) -> None:
        await self.service.enable(model_id, self.principal, reason)

    async def disable(self, model_id: str, reason: str) -> None:
        await self.service.disable(model_id, self.principal, reason)
