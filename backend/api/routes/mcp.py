"""/api/mcp: MCP servers (global ones by admins, personal ones by their users) and the tools a caller may use.

Header and environment values are never returned (only their names). Personal servers exist only while
``_personal_servers_allowed`` says so (the ``mcp_connections`` configuration toggle).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, status

from backend.api.deps import CurrentUser, Paging, ServicesDep
from backend.api.openapi import errors
from backend.auth.principal import Principal
from backend.configuration.features import Feature
from backend.mcp.schemas import (
    McpServerCreate,
    McpServerPage,
    McpServerPublic,
    McpServerToolList,
    McpServerUpdate,
    McpToolList,
    Scope,
    ToolCall,
    ToolResultPublic,
)
from backend.services import Services

router = APIRouter(prefix="/api/mcp", tags=["mcp"])


async def _personal_servers_allowed(services: Services, user: Principal) -> bool:
    """Whether users may register and use personal MCP servers: the ``mcp_connections`` toggle.

    The one place that decides it (admins are exempt, as from every toggle)."""
    return await services.configuration.enabled(Feature.mcp_connections, user)


@router.get("/servers")
async def list_servers(
    user: CurrentUser,
    services: ServicesDep,
    page: Paging,
    all_users: Annotated[bool, Query(description="Admins: every user's personal servers too.")] = False,
) -> McpServerPage:
    return await services.mcp.servers.page(user, page, all_users)


@router.post("/servers", status_code=status.HTTP_201_CREATED, responses=errors(400))
async def create_server(body: McpServerCreate, user: CurrentUser, services: ServicesDep) -> McpServerPublic:
    if body.scope == Scope.personal and not await _personal_servers_allowed(services, user):
        await services.configuration.require(Feature.mcp_connections, user)  # 403 naming the toggle
    return await services.mcp.servers.create(body, user)


@router.get("/servers/{server_id}", responses=errors(404))
async def get_server(server_id: str, user: CurrentUser, services: ServicesDep) -> McpServerPublic:
    return await services.mcp.servers.get(server_id, user)


@router.patch("/servers/{server_id}", responses=errors(400, 404))
async def update_server(
    server_id: str, body: McpServerUpdate, user: CurrentUser, services: ServicesDep
) -> McpServerPublic:
    return await services.mcp.servers.update(server_id, body, user)


@router.delete("/servers/{server_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_server(server_id: str, user: CurrentUser, services: ServicesDep) -> None:
    await services.mcp.servers.delete(server_id, user)


@router.get("/servers/{server_id}/tools", responses=errors(404))
async def list_server_tools(server_id: str, user: CurrentUser, services: ServicesDep) -> McpServerToolList:
    """All of a server's tools, each marked whether its allow list lets users use it (admins; owners their own);
    a server that cannot be reached answers with ``error`` saying why."""
    return await services.mcp.server_tools(server_id, user)


@router.post("/servers/{server_id}/tools/{tool_name}/call", responses=errors(404, 409, 502, 504))
async def call_tool(
    server_id: str, tool_name: str, body: ToolCall, user: CurrentUser, services: ServicesDep
) -> ToolResultPublic:
    """Try a tool by hand: admins on global servers, owners on their personal servers."""
    personal = await _personal_servers_allowed(services, user)
    result = await services.mcp.call_tool_by_hand(
        user, server_id, tool_name, body.arguments, include_personal=personal, timeout=body.timeout_seconds
    )
    return ToolResultPublic.model_validate(asdict(result))


@router.get("/tools")
async def list_tools(user: CurrentUser, services: ServicesDep) -> McpToolList:
    """Every MCP tool the caller may use; a server that cannot be reached is named in ``errors``."""
    return await services.mcp.list_tools(user, include_personal=await _personal_servers_allowed(services, user))
