"""/api/models: the model registry (reads for everyone who may see a model, writes for admins) and its lifecycle.

A model's ``status`` belongs to its lifecycle (backend/lifecycle): requests never set it (422). Creating, updating,
enabling, disabling or deleting a model LISA deploys starts a workflow: 202 with the workflow and where its events
are read. Routes of one model come before the model's own (``{model_id:path}`` would take ``x/events`` whole)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from backend.api.deps import AdminUser, CurrentUser, Paging, ServicesDep, requires
from backend.api.openapi import errors
from backend.configuration.features import Feature
from backend.lifecycle.deployers.base import MAX_LOG_LINES
from backend.lifecycle.schemas import ModelEventPage, WorkflowAccepted
from backend.registry.schemas import ModelCreate, ModelPage, ModelPublic, ModelUpdate

router = APIRouter(prefix="/api/models", tags=["models"])
# The model library (the toggle model_library; admins are exempt). /v1/models, which OpenAI clients pick a model
# from, stays open to everyone.
LIBRARY = [requires(Feature.model_library)]
STARTED: dict[int | str, dict[str, Any]] = {
    202: {"model": WorkflowAccepted, "description": "A workflow was started (a model LISA deploys)."}
}


def answer(result: Any) -> Any:
    """A started workflow is 202; anything else as the route's own status."""
    if isinstance(result, WorkflowAccepted):
        return JSONResponse(result.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
    return result


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=ModelPublic, responses={**errors(400, 409), **STARTED}
)
async def create_model(body: ModelCreate, admin: AdminUser, services: ServicesDep) -> Any:
    return answer(await services.lifecycle.service.create(body, admin))


@router.get("", dependencies=LIBRARY)
async def list_models(user: CurrentUser, services: ServicesDep, page: Paging) -> ModelPage:
    return await services.registry.page(user, page)


@router.get("/{model_id:path}/events", responses=errors(404))
async def model_events(model_id: str, _admin: AdminUser, services: ServicesDep, page: Paging) -> ModelEventPage:
    """What happened to the model, oldest first: status changes, workflow steps, its deployment's events, health."""
    return await services.lifecycle.service.events(model_id, page)


@router.get(
    "/{model_id:path}/logs",
    response_class=PlainTextResponse,
    responses={
        **errors(400, 404, 502),
        200: {"content": {"text/plain": {}}, "description": "The last lines of its output."},
    },
)
async def model_logs(
    model_id: str,
    _admin: AdminUser,
    services: ServicesDep,
    lines: Annotated[int, Query(ge=1, le=MAX_LOG_LINES, description="How many of the last lines.")] = 200,
) -> PlainTextResponse:
    """The model server's own output (a local model's log, an ECS model's CloudWatch log group), oldest line first;
    404 for a model LISA does not deploy."""
    return PlainTextResponse(await services.lifecycle.service.logs(model_id, lines))


@router.post("/{model_id:path}/enable", response_model=ModelPublic, responses={**errors(400, 404, 409), **STARTED})
async def enable_model(model_id: str, admin: AdminUser, services: ServicesDep) -> Any:
    """From Stopped only (409 otherwise)."""
    return answer(await services.lifecycle.service.enable(model_id, admin))


@router.post("/{model_id:path}/disable", response_model=ModelPublic, responses={**errors(400, 404, 409), **STARTED})
async def disable_model(model_id: str, admin: AdminUser, services: ServicesDep) -> Any:
    """From InService only (409 otherwise); the gateway stops routing to it at once."""
    return answer(await services.lifecycle.service.disable(model_id, admin))


@router.get("/{model_id:path}", responses=errors(404), dependencies=LIBRARY)
async def get_model(model_id: str, user: CurrentUser, services: ServicesDep) -> ModelPublic:
    return await services.registry.get(model_id, user)


@router.patch("/{model_id:path}", response_model=ModelPublic, responses={**errors(400, 404, 409), **STARTED})
async def update_model(model_id: str, body: ModelUpdate, admin: AdminUser, services: ServicesDep) -> Any:
    """From InService or Stopped only (409 otherwise)."""
    return answer(await services.lifecycle.service.update(model_id, body, admin))


@router.delete("/{model_id:path}", status_code=status.HTTP_204_NO_CONTENT, responses={**errors(404, 409), **STARTED})
async def delete_model(model_id: str, admin: AdminUser, services: ServicesDep) -> Response:
    """409 while a repository, collection, pipeline or assistant uses the model, or while a workflow runs."""
    started = await services.lifecycle.service.delete(model_id, admin)
    if started is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return JSONResponse(started.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
