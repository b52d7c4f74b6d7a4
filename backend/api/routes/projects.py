"""/api/projects: folders of one's own chat sessions. A session joins one with PATCH /api/sessions/{id}
``{"project_id": ...}``; deleting a project keeps its sessions (outside any project) unless ``delete_sessions``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from backend.api.deps import CurrentUser, Paging, ServicesDep
from backend.api.openapi import errors
from backend.chat.schemas import ProjectCreate, ProjectPage, ProjectPublic, ProjectUpdate

router = APIRouter(prefix="/api/projects", tags=["sessions"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_project(body: ProjectCreate, user: CurrentUser, services: ServicesDep) -> ProjectPublic:
    return await services.chat.create_project(user, body.name)


@router.get("")
async def list_projects(user: CurrentUser, services: ServicesDep, page: Paging) -> ProjectPage:
    return await services.chat.projects(user, page)


@router.get("/{project_id}", responses=errors(404))
async def get_project(project_id: str, user: CurrentUser, services: ServicesDep) -> ProjectPublic:
    return await services.chat.project(user, project_id)


@router.patch("/{project_id}", responses=errors(404))
async def rename_project(
    project_id: str, body: ProjectUpdate, user: CurrentUser, services: ServicesDep
) -> ProjectPublic:
    return await services.chat.rename_project(user, project_id, body.name)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_project(
    project_id: str,
    user: CurrentUser,
    services: ServicesDep,
    delete_sessions: Annotated[
        bool, Query(description="Delete the project's sessions too (default: keep them, outside any project).")
    ] = False,
) -> None:
    await services.chat.delete_project(user, project_id, delete_sessions=delete_sessions)
