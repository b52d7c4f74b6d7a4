"""/api/limits: admins set limits per user, group or token; everyone sees their own limits and usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from backend.api.deps import AdminUser, CurrentUser, ServicesDep
from backend.api.openapi import errors
from backend.limits.schemas import LimitPage, LimitPublic, LimitSet, MyLimits, Scope

router = APIRouter(prefix="/api/limits", tags=["limits"])

Subject = Annotated[str, Path(min_length=1, max_length=256, description="A user id, a group name or a token id.")]


@router.get("/me")
async def my_limits(user: CurrentUser, services: ServicesDep) -> MyLimits:
    buckets = await services.limits.buckets_for(user)
    return MyLimits(buckets=await services.limiter.usage(buckets))


@router.get("")
async def list_limits(_admin: AdminUser, services: ServicesDep) -> LimitPage:
    return LimitPage(data=await services.limits.all())


@router.put("/{scope}/{subject}")
async def set_limits(
    scope: Scope, subject: Subject, body: LimitSet, admin: AdminUser, services: ServicesDep
) -> LimitPublic:
    return await services.limits.set(scope, subject, body, admin)


@router.delete("/{scope}/{subject}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_limits(scope: Scope, subject: Subject, admin: AdminUser, services: ServicesDep) -> None:
    await services.limits.delete(scope, subject, admin)
