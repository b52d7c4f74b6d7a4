"""/api/audit: the audit log of admin writes (admins), newest first, filterable."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from backend.api.deps import AdminUser, Paging, ServicesDep
from backend.audit.log import AuditPage, query

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("")
async def list_audit_events(
    _admin: AdminUser,
    services: ServicesDep,
    page: Paging,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="e.g. model.create, model.update, token.revoke")] = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> AuditPage:
    return await query(
        services.engine,
        page,
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        start=start,
        end=end,
    )
