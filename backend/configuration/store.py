"""The SQL of configuration versions: the one in force (the highest), writing the next one, the history.

Writes are serialised by a table lock held for their transaction (readers are not blocked), so each version's
changes are computed against the version truly before it, and version numbers have no gaps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal
from backend.configuration.schemas import Banner, ConfigurationVersion, ConfigurationVersionPage
from backend.db import tables
from backend.db.changes import publish
from backend.errors import BadRequest, NotFound
from backend.paging import PageParams, read_page
from backend.registry.schemas import ModelType

TOPIC = "configuration"
T = tables.configuration_versions
M = tables.models


@dataclass(frozen=True, slots=True)
class Stored:
    """What admins stored: only the toggles they set (the rest take their defaults), the banner, the default model."""

    version: int = 0
    features: dict[str, bool] = field(default_factory=dict)
    banner: dict[str, Any] = field(default_factory=lambda: Banner().model_dump())
    default_model_id: str | None = None
    created_at: datetime | None = None
    created_by: str | None = None

    def values(self) -> dict[str, Any]:
        return {"features": self.features, "banner": self.banner, "default_model_id": self.default_model_id}


def _stored(row: Any) -> Stored:
    return Stored(
        version=row["version"],
        features=dict(row["features"]),
        banner=Banner.model_validate(row["banner"]).model_dump(),
        default_model_id=row["default_model_id"],
        created_at=row["created_at"],
        created_by=row["created_by"],
    )


def changes_between(before: Stored, after: Stored) -> list[dict[str, Any]]:
    """What a new version changes, field by field (a toggle's null: nothing stored, its default applied)."""
    changes: list[dict[str, Any]] = []
    for name in sorted(set(before.features) | set(after.features)):
        old, new = before.features.get(name), after.features.get(name)
        if old != new:
            changes.append({"field": f"features.{name}", "before": old, "after": new})
    if before.banner != after.banner:
        changes.append({"field": "banner", "before": before.banner, "after": after.banner})
    if before.default_model_id != after.default_model_id:
        changes.append(
            {"field": "default_model_id", "before": before.default_model_id, "after": after.default_model_id}
        )
    return changes


class ConfigurationStore:
    def __init__(self, engine: AsyncEngine, on_commit: Callable[[str], None] = lambda _t: None) -> None:
        self.engine = engine
        self._on_commit = on_commit  # this process sees its own writes at once; others via the change feed

    @staticmethod
    async def _latest(conn: AsyncConnection) -> Stored:
        row = (await conn.execute(sa.select(T).order_by(T.c.version.desc()).limit(1))).first()
        return _stored(row._mapping) if row else Stored()

    async def latest(self) -> Stored:
        async with self.engine.connect() as conn:
            return await self._latest(conn)

    @staticmethod
    async def _check_default_model(conn: AsyncConnection, model_id: str) -> None:
        row = (await conn.execute(sa.select(M.c.type).where(M.c.id == model_id))).first()
        if row is None:
            raise BadRequest(f"default_model_id: no model '{model_id}' in the registry", "default_model_id")
        if row.type != ModelType.textgen.value:
            raise BadRequest(
                f"default_model_id: '{model_id}' is a {row.type} model; chats need a textgen model", "default_model_id"
            )

    async def write(
        self, actor: Principal, make: Callable[[Stored], Stored], *, restored_from: int | None = None
    ) -> Stored:
        """The next version, ``make(current)``; nothing is written when it changes nothing. ``make`` may refuse by
        raising: nothing is written then either."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.text(f"LOCK TABLE {T.name} IN EXCLUSIVE MODE"))
            current = await self._latest(conn)
            new = make(current)
            changes = changes_between(current, new)
            if not changes:
                return current
            if new.default_model_id is not None and new.default_model_id != current.default_model_id:
                await self._check_default_model(conn, new.default_model_id)
            row = (
                await conn.execute(
                    T.insert()
                    .values(
                        version=current.version + 1,
                        created_by=actor.username,
                        created_by_token=actor.token_id,
                        changes=changes,
                        restored_from=restored_from,
                        **new.values(),
                    )
                    .returning(T)
                )
            ).one()
            action = "configuration.restore" if restored_from is not None else "configuration.update"
            await audit.record(
                conn, actor, action, "configuration", str(row.version), before=current.values(), after=new.values()
            )
            await publish(conn, TOPIC)
        self._on_commit(TOPIC)
        return _stored(row._mapping)

    async def version(self, version: int) -> ConfigurationVersion:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(T).where(T.c.version == version))).first()
        if row is None:
            raise NotFound(f"no configuration version {version}")
        return ConfigurationVersion.model_validate(row._mapping)

    async def page(self, params: PageParams) -> ConfigurationVersionPage:
        """Newest first."""
        rows, next_cursor = await read_page(self.engine, sa.select(T), T.c.version, params, descending=True)
        return ConfigurationVersionPage(
            data=[ConfigurationVersion.model_validate(r) for r in rows], next_cursor=next_cursor
        )
