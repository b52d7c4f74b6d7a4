"""/api/models/{id}/schedule: the daily window in which a model runs (started when it opens, stopped when it closes;
docs/lifecycle-local.md). Admins only: when a model runs is infrastructure. Included before the models router, whose
``/{model_id:path}`` would otherwise take these paths."""

from __future__ import annotations

from fastapi import APIRouter, status

from backend.api.deps import AdminUser, ServicesDep
from backend.api.openapi import errors
from backend.lifecycle.schedule_windows import ScheduleWindow
from backend.lifecycle.schedules import SchedulePublic

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("/{model_id:path}/schedule", responses=errors(404))
async def get_schedule(model_id: str, _admin: AdminUser, services: ServicesDep) -> SchedulePublic:
    return await services.schedules.get(model_id)


@router.put("/{model_id:path}/schedule", responses=errors(404))
async def put_schedule(model_id: str, body: ScheduleWindow, admin: AdminUser, services: ServicesDep) -> SchedulePublic:
    return await services.schedules.put(model_id, body, actor=admin)


@router.delete("/{model_id:path}/schedule", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_schedule(model_id: str, admin: AdminUser, services: ServicesDep) -> None:
    await services.schedules.delete(model_id, actor=admin)
