"""Model registry: create, read, update, delete; every write notifies all backend processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal, access_filter, can_access
from backend.db import tables
from backend.db.changes import publish
from backend.errors import BadRequest, Conflict, NotFound
from backend.net.egress import EgressGuard
from backend.paging import PageParams, read_page
from backend.registry.schemas import (
    Hosting,
    ModelCreate,
    ModelHealth,
    ModelPage,
    ModelPublic,
    ModelRoute,
    ModelStatus,
    ModelType,
    ModelUpdate,
    check_consistency,
)
from backend.registry.secrets import SecretBox

TOPIC = "models"
T = tables.models
MASK = "***"
# Called inside a write's transaction with the model's row as it is (locked): may write more (a workflow, an event)
# or raise to refuse the write (a state rule, a model still in use), which then leaves nothing written.
Within = Callable[[AsyncConnection, RowMapping], Awaitable[None]]


ADMIN_ONLY = ("provider_model", "base_url", "upstream_model", "has_api_key", "managed_by", "deployment",
              "status_reason", "health_reason")  # fmt: skip


def public_deployment(deployment: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The stored deployment with the container environment's values masked (the names stay)."""
    if deployment is None:
        return None
    spec = dict(deployment.get("spec") or {})
    if isinstance(spec.get("environment"), dict):
        spec["environment"] = dict.fromkeys(spec["environment"], MASK)
    return {"deployer": deployment.get("deployer"), "spec": spec}


def audited(row: Any) -> dict[str, Any]:
    """A model's row for the audit log: the deployment's environment values masked like the API shows them."""
    values = dict(row)
    values["deployment"] = public_deployment(values.get("deployment"))
    return values


HEALTH_RESET = {"health": ModelHealth.unknown.value, "health_reason": None, "unreachable_since": None,
                "health_failures": 0, "health_checked_at": None}  # fmt: skip


def to_public(m: Any, *, admin: bool = True) -> ModelPublic:
    """Where the model runs (URL, provider string, upstream name, credentials, manager, deployment, failure and
    health details) is shown to admins only."""
    health = m["health"]
    public = ModelPublic.model_validate(
        {
            **m,
            "has_api_key": m["api_key_encrypted"] is not None,
            "deployment": public_deployment(m["deployment"]),
            "unreachable_since": m["unreachable_since"] if health == ModelHealth.unreachable.value else None,
            "health_reason": m["health_reason"] if health == ModelHealth.unreachable.value else None,
        }
    )
    return public if admin else public.model_copy(update=dict.fromkeys(ADMIN_ONLY))


class ModelRegistry:
    def __init__(
        self,
        engine: AsyncEngine,
        box: SecretBox,
        on_commit: Callable[[str], None] = lambda _t: None,
        egress: EgressGuard | None = None,
    ) -> None:
        self.engine = engine
        self.box = box
        self._on_commit = on_commit  # this process sees its own writes at once; others via the change feed
        self.egress = egress or EgressGuard.default()

    async def _check_base_url(self, model_id: str, values: dict[str, Any]) -> None:
        """A base_url being set must pass the egress guard (400 naming the host and why), before any write."""
        if values.get("base_url"):
            await self.egress.check_url(values["base_url"], f"model '{model_id}': base_url")

    def _values(self, data: ModelCreate | ModelUpdate, *, fill_defaults: bool) -> dict[str, Any]:
        fields = data.model_dump(exclude_unset=not fill_defaults, exclude={"api_key", "deployment"})
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "base_url" and value is not None:
                value = str(value).rstrip("/")
            if key in ("features", "allowed_groups") and value is not None:
                value = sorted({str(v) for v in value})
            if isinstance(value, ModelType | Hosting | ModelStatus):
                value = value.value
            values[key] = value
        if "api_key" in data.model_fields_set:
            key_value = data.api_key.get_secret_value() if data.api_key else ""
            values["api_key_encrypted"] = self.box.seal(key_value) if key_value else None
        return values

    async def create(
        self,
        data: ModelCreate,
        *,
        managed_by: str | None = None,
        actor: Principal | None = None,
        status: ModelStatus = ModelStatus.in_service,
        deployment: dict[str, Any] | None = None,
        within: Within | None = None,
    ) -> ModelPublic:
        """``status`` and ``deployment`` are the lifecycle's (backend/lifecycle/service.py), which also passes
        ``within`` to start the model's workflow in the same transaction."""
        values = self._values(data, fill_defaults=True)
        values.pop("api_key", None)
        values["name"] = values.get("name") or data.id
        values["allowed_groups"] = values.get("allowed_groups") or []
        values["features"] = values.get("features") or []
        if values.get("streaming") is None:
            values["streaming"] = data.type == ModelType.textgen
        values["status"] = status.value
        values["managed_by"] = managed_by
        values["deployment"] = deployment
        await self._check_base_url(data.id, values)
        try:
            async with self.engine.begin() as conn:
                row = (await conn.execute(T.insert().values(**values).returning(T))).one()
                await audit.record(conn, actor, "model.create", "model", data.id, after=audited(row._mapping))
                if within is not None:
                    await within(conn, row._mapping)
                await publish(conn, TOPIC)
        except IntegrityError as exc:
            raise Conflict(f"a model with id '{data.id}' already exists") from exc
        self._on_commit(TOPIC)
        return to_public(row._mapping)

    async def _row(self, model_id: str) -> Any:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(T).where(T.c.id == model_id))).first()
        return row._mapping if row else None

    async def get(self, model_id: str, principal: Principal) -> ModelPublic:
        m = await self._row(model_id)
        if m is None or not can_access(principal, m["allowed_groups"]):
            raise NotFound(f"model '{model_id}' not found")
        return to_public(m, admin=principal.is_admin)

    async def page(self, principal: Principal, params: PageParams) -> ModelPage:
        query = sa.select(T).where(access_filter(principal, T.c.allowed_groups))
        rows, next_cursor = await read_page(self.engine, query, T.c.id, params)
        return ModelPage(data=[to_public(m, admin=principal.is_admin) for m in rows], next_cursor=next_cursor)

    async def update(
        self,
        model_id: str,
        data: ModelUpdate,
        *,
        actor: Principal | None = None,
        status: ModelStatus | None = None,
        within: Within | None = None,
    ) -> ModelPublic:
        """``status`` is the lifecycle's to set (``set_status``, ``upsert_managed``); requests cannot. ``within``
        runs on the locked row before the write (the lifecycle's state rules)."""
        changes = self._values(data, fill_defaults=False)
        if status is not None:
            changes["status"] = status.value
        await self._check_base_url(model_id, changes)
        async with self.engine.begin() as conn:
            current = (await conn.execute(sa.select(T).where(T.c.id == model_id).with_for_update())).first()
            if current is None:
                raise NotFound(f"model '{model_id}' not found")
            if within is not None:
                await within(conn, current._mapping)
            merged = {**current._mapping, **changes}
            for nullable_list in ("allowed_groups", "features"):
                if merged[nullable_list] is None:
                    merged[nullable_list] = []
                    changes[nullable_list] = []
            if merged["streaming"] is None:
                changes["streaming"] = merged["streaming"] = merged["type"] == ModelType.textgen.value
            if merged["name"] is None:
                changes["name"] = merged["name"] = model_id
            try:
                check_consistency(
                    ModelType(merged["type"]),
                    Hosting(merged["hosting"]),
                    merged["provider_model"],
                    merged["base_url"],
                    merged["streaming"],
                    merged["deployment"] is not None,
                )
            except (ValueError, ValidationError) as exc:
                raise BadRequest(str(exc)) from exc
            changes["updated_at"] = datetime.now(UTC)
            if changes.get("base_url", current.base_url) != current.base_url:
                changes |= HEALTH_RESET  # what the checks found was about the old address
            row = (await conn.execute(T.update().where(T.c.id == model_id).values(**changes).returning(T))).one()
            await audit.record(
                conn, actor, "model.update", "model", model_id, before=audited(current._mapping),
                after=audited(row._mapping),
            )  # fmt: skip
            await publish(conn, TOPIC)
        self._on_commit(TOPIC)
        return to_public(row._mapping)

    async def delete(self, model_id: str, *, actor: Principal | None = None, within: Within | None = None) -> None:
        """``within`` runs on the locked row first (the lifecycle's state rules and its check of the model's users)."""
        async with self.engine.begin() as conn:
            current = (await conn.execute(sa.select(T).where(T.c.id == model_id).with_for_update())).first()
            if current is None:
                raise NotFound(f"model '{model_id}' not found")
            if within is not None:
                await within(conn, current._mapping)
            gone = (await conn.execute(T.delete().where(T.c.id == model_id).returning(T))).one()
            await audit.record(conn, actor, "model.delete", "model", model_id, before=audited(gone._mapping))
            await publish(conn, TOPIC)
        self._on_commit(TOPIC)

    # --- for the lifecycle: writes inside its own transactions ----------------------------------------------------
    @staticmethod
    async def locked(conn: AsyncConnection, model_id: str) -> RowMapping | None:
        """The model's row, locked until the transaction ends; None when there is none."""
        row = (await conn.execute(sa.select(T).where(T.c.id == model_id).with_for_update())).first()
        return row._mapping if row else None

    @staticmethod
    async def write(
        conn: AsyncConnection,
        model_id: str,
        values: dict[str, Any],
        *,
        action: str,
        actor: Principal | None = None,
        before: Mapping[Any, Any] | None = None,
        reason: str | None = None,
    ) -> RowMapping | None:
        """Set columns the lifecycle owns (status, the deployment's address, health), audited as ``action`` (with
        ``reason`` in the entry's ``after``, when given); the change is published on commit (call :meth:`committed`
        after it)."""
        row = (await conn.execute(T.update().where(T.c.id == model_id).values(**values).returning(T))).first()
        if row is None:
            return None
        if action:
            before_row = audited(before) if before is not None else None
            after = audited(row._mapping) | ({"reason": reason} if reason else {})
            await audit.record(conn, actor, action, "model", model_id, before=before_row, after=after)
        await publish(conn, TOPIC)
        return row._mapping

    @staticmethod
    async def remove(
        conn: AsyncConnection, model_id: str, *, actor: Principal | None = None, action: str = "model.delete"
    ) -> bool:
        gone = (await conn.execute(T.delete().where(T.c.id == model_id).returning(T))).first()
        if gone is None:
            return False
        await audit.record(conn, actor, action, "model", model_id, before=audited(gone._mapping))
        await publish(conn, TOPIC)
        return True

    def committed(self) -> None:
        """This process sees a change written through :meth:`write` or :meth:`remove` at once."""
        self._on_commit(TOPIC)

    async def row(self, model_id: str) -> RowMapping | None:
        return await self._row(model_id)

    async def upsert_managed(self, data: ModelCreate, managed_by: str) -> None:
        """Register or refresh a model that LISA itself runs (its address changes between starts). Its status is
        kept: a model an admin disabled stays Stopped, a failed one Failed with its reason (backend/runtime/bundled.py
        leaves their servers down)."""
        if await self._row(data.id) is None:
            try:
                await self.create(data, managed_by=managed_by)
                return
            except Conflict:
                pass
        await self.update(data.id, ModelUpdate(base_url=data.base_url, streaming=data.streaming))

    async def set_status(self, model_id: str, status: ModelStatus) -> None:
        await self.update(model_id, ModelUpdate(), status=status)

    async def routes(self) -> dict[str, ModelRoute]:
        async with self.engine.connect() as conn:
            rows = [r._mapping for r in (await conn.execute(sa.select(T))).all()]
        return {
            m["id"]: ModelRoute(
                id=m["id"],
                type=ModelType(m["type"]),
                hosting=Hosting(m["hosting"]),
                provider_model=m["provider_model"],
                base_url=m["base_url"],
                upstream_model=m["upstream_model"],
                api_key=self.box.open(m["api_key_encrypted"], f"the API key of model {m['id']!r}")
                if m["api_key_encrypted"]
                else None,
                allowed_groups=tuple(m["allowed_groups"]),
                streaming=m["streaming"],
                status=ModelStatus(m["status"]),
                created=int(m["created_at"].timestamp()),
                context_window=m["context_window"],
                health=ModelHealth(m["health"]),
                unreachable_since=m["unreachable_since"],
            )
            for m in rows
        }
