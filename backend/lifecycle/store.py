"""SQL of the lifecycle: workflows (a durable record of each step: started, with its deadline, and done) and the
events of each model. Writes that belong with a change of the model itself take the caller's connection, so that
the model's status, its workflow and its event commit together."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.auth.principal import Principal
from backend.db import tables
from backend.errors import Conflict
from backend.lifecycle.schemas import EventKind, ModelEvent, ModelEventPage, WorkflowKind, WorkflowState
from backend.paging import PageParams, read_page
from backend.registry.schemas import ModelStatus

W, E = tables.model_workflows, tables.model_events
MAX_MESSAGE = 4000  # characters of an event's message or a failure's reason kept (a stack's reasons can be long)


def new_workflow_id() -> str:
    return "wf-" + secrets.token_hex(12)


def clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


async def start_workflow(
    conn: AsyncConnection,
    model_id: str,
    kind: WorkflowKind,
    deployer: str,
    target: dict[str, Any],
    actor: Principal | None,
) -> RowMapping:
    """A new running workflow; 409 when one already runs for the model (one at a time, by a unique index)."""
    values = {
        "id": new_workflow_id(),
        "model_id": model_id,
        "kind": kind.value,
        "state": WorkflowState.running.value,
        "deployer": deployer,
        "target": target,
        "created_by": actor.username if actor else "system",
    }
    try:
        async with conn.begin_nested():
            return (await conn.execute(W.insert().values(**values).returning(W))).one()._mapping
    except IntegrityError as exc:
        raise Conflict(
            f"a workflow is already running for model '{model_id}' (its progress: /api/models/{model_id}/events)"
        ) from exc


async def add_event(
    conn: AsyncConnection,
    model_id: str,
    kind: EventKind,
    message: str,
    *,
    workflow_id: str | None = None,
    status: ModelStatus | None = None,
    step: str | None = None,
    detail: dict[str, Any] | None = None,
    source_id: str | None = None,
) -> None:
    """One event; a deployment event already stored (same ``source_id``) is not stored twice."""
    statement = insert(E).values(
        model_id=model_id,
        workflow_id=workflow_id,
        kind=kind.value,
        status=status.value if status else None,
        step=step,
        message=clip(message),
        detail=detail,
        source_id=source_id,
    )
    if source_id is not None:
        statement = statement.on_conflict_do_nothing(
            index_elements=[E.c.model_id, E.c.source_id], index_where=E.c.source_id.isnot(None)
        )
    await conn.execute(statement)


async def load(engine: AsyncEngine, workflow_id: str) -> RowMapping | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(W).where(W.c.id == workflow_id))).first()
    return row._mapping if row else None


async def step_started(
    engine: AsyncEngine, workflow: RowMapping, index: int, step: str, deadline_at: datetime
) -> RowMapping:
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                W.update()
                .where(W.c.id == workflow["id"], W.c.state == WorkflowState.running.value)
                .values(
                    step_index=index,
                    step=step,
                    step_started_at=sa.func.now(),
                    step_deadline_at=deadline_at,
                    updated_at=sa.func.now(),
                )
                .returning(W)
            )
        ).one()
        await add_event(
            conn,
            workflow["model_id"],
            EventKind.step,
            f"{workflow['kind']}: step {step} started",
            workflow_id=workflow["id"],
            step=step,
            detail={"deadline_at": deadline_at.isoformat()},
        )
    return row._mapping


async def step_done(engine: AsyncEngine, workflow: RowMapping, index: int, step: str, data: dict[str, Any]) -> None:
    """The step finished: what it found joins the workflow's data, and the next step is the one to run."""
    async with engine.begin() as conn:
        await conn.execute(
            W.update()
            .where(W.c.id == workflow["id"], W.c.state == WorkflowState.running.value)
            .values(
                step_index=index + 1,
                step_started_at=None,
                step_deadline_at=None,
                data=W.c.data.op("||")(data),
                updated_at=sa.func.now(),
            )
        )
        await add_event(
            conn,
            workflow["model_id"],
            EventKind.step,
            f"{workflow['kind']}: step {step} done",
            workflow_id=workflow["id"],
            step=step,
        )


async def end(conn: AsyncConnection, workflow_id: str, state: WorkflowState, error: str | None = None) -> None:
    await conn.execute(
        W.update()
        .where(W.c.id == workflow_id)
        .values(
            state=state.value, error=clip(error) if error else None, finished_at=sa.func.now(), updated_at=sa.func.now()
        )
    )


async def running_without_job(engine: AsyncEngine, task_name: str) -> list[str]:
    """Running workflows that no queued or running job carries (their process stopped, or stopped before the job
    was queued): the worker queues them again."""
    query = sa.text(
        "SELECT id FROM model_workflows w WHERE state = 'running' AND NOT EXISTS ("
        "SELECT 1 FROM procrastinate_jobs p WHERE p.task_name = :task AND p.status IN ('todo', 'doing') "
        "AND p.args->>'workflow_id' = w.id) ORDER BY created_at"
    )
    async with engine.connect() as conn:
        return list((await conn.execute(query, {"task": task_name})).scalars().all())


async def events_page(engine: AsyncEngine, model_id: str, params: PageParams) -> ModelEventPage:
    """Oldest first: a workflow's steps read in the order they happened."""
    rows, next_cursor = await read_page(engine, sa.select(E).where(E.c.model_id == model_id), E.c.id, params)
    return ModelEventPage(
        data=[ModelEvent.model_validate({**m, "id": str(m["id"])}) for m in rows], next_cursor=next_cursor
    )


async def has_events(engine: AsyncEngine, model_id: str) -> bool:
    async with engine.connect() as conn:
        return (await conn.scalar(sa.select(sa.exists().where(E.c.model_id == model_id)))) is True
