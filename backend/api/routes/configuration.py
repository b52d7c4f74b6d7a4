"""/api/configuration: feature toggles, the system banner and the default model. Everyone signed in reads; admins
write, each write a new version with who changed what (the history), and may restore an old version.

Which value wins between the deployment's settings and the stored configuration: docs/configuration.md."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from backend.api.deps import AdminUser, CurrentUser, Paging, ServicesDep
from backend.api.openapi import errors
from backend.configuration.schemas import (
    ConfigurationPublic,
    ConfigurationReplace,
    ConfigurationUpdate,
    ConfigurationVersion,
    ConfigurationVersionPage,
)

router = APIRouter(prefix="/api/configuration", tags=["configuration"])

Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="A version number of the history.")]


@router.get("")
async def get_configuration(user: CurrentUser, services: ServicesDep) -> ConfigurationPublic:
    """Every toggle with the value in force, where it comes from (default, stored, environment) and whether you may
    use it; the banner; the default model."""
    return await services.configuration.public(user)


@router.put("", responses=errors(400, 409))
async def replace_configuration(
    body: ConfigurationReplace, admin: AdminUser, services: ServicesDep
) -> ConfigurationPublic:
    """Replace the stored configuration (toggles left out go back to their defaults). 409 for a pinned toggle."""
    return await services.configuration.replace(body, admin)


@router.patch("", responses=errors(400, 409))
async def update_configuration(
    body: ConfigurationUpdate, admin: AdminUser, services: ServicesDep
) -> ConfigurationPublic:
    """Change what is given (a toggle set to null goes back to its default). 409 for a pinned toggle."""
    return await services.configuration.update(body, admin)


@router.get("/history")
async def list_configuration_versions(
    _admin: AdminUser, services: ServicesDep, page: Paging
) -> ConfigurationVersionPage:
    """Newest first: who wrote each version, when, and what it changed."""
    return await services.configuration.history(page)


@router.get("/history/{version}", responses=errors(404))
async def get_configuration_version(version: Version, _admin: AdminUser, services: ServicesDep) -> ConfigurationVersion:
    return await services.configuration.version(version)


@router.post("/history/{version}/restore", responses=errors(400, 404, 409))
async def restore_configuration_version(
    version: Version, admin: AdminUser, services: ServicesDep
) -> ConfigurationPublic:
    """A new version holding the stored values of an old one."""
    return await services.configuration.restore(version, admin)
