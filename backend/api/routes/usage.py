"""/api/usage: metered /v1 traffic aggregated per model and per user (admins)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Query

from backend.api.deps import AdminUser, CurrentUser, ServicesDep
from backend.api.openapi import errors
from backend.errors import BadRequest
from backend.usage.service import GroupBy, UsageReport, aggregate

router = APIRouter(prefix="/api/usage", tags=["usage"])


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """Default: the 24 hours before ``end``, which defaults to now."""
    end = _utc(end) if end else datetime.now(UTC)
    start = _utc(start) if start else end - timedelta(days=1)
    if start >= end:
        raise BadRequest("start must be before end")
    return start, end


@router.get("/me", responses=errors(400))
async def my_usage(
    user: CurrentUser,
    services: ServicesDep,
    start: datetime | None = Query(default=None, description="ISO 8601; default: 24 hours before end."),
    end: datetime | None = Query(default=None, description="ISO 8601; default: now."),
) -> UsageReport:
    """The caller's own usage, per model."""
    return await aggregate(services.engine, *_range(start, end), GroupBy.model, username=user.username)


@router.get("", responses=errors(400))
async def get_usage(
    _admin: AdminUser,
    services: ServicesDep,
    start: datetime | None = Query(default=None, description="ISO 8601; default: 24 hours before end."),
    end: datetime | None = Query(default=None, description="ISO 8601; default: now."),
    group_by: GroupBy = GroupBy.model,
) -> UsageReport:
    return await aggregate(services.engine, *_range(start, end), group_by)
