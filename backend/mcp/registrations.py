"""MCP server registrations: who may register, see, change and delete which server, and what a registration may
hold (backend/mcp/store.py has the SQL and the visibility rules, backend/mcp/schemas.py the fields).

Admins register global servers (streamable HTTP, or a stdio command LISA runs: backend/mcp/hosted.py); anyone may
register personal streamable HTTP servers, which only they see and use. Admins may change and delete any server,
owners their own. URLs pass the egress guard before anything is written; header and environment values are sealed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import RowMapping

from backend.auth.principal import Principal
from backend.errors import BadRequest, Forbidden, NotFound
from backend.mcp import store as rules
from backend.mcp.hosted import HostedServers
from backend.mcp.schemas import McpServerCreate, McpServerPage, McpServerPublic, McpServerUpdate, Scope, Transport
from backend.mcp.store import McpServerStore, new_id
from backend.net.egress import EgressGuard
from backend.paging import PageParams

STDIO_FIELDS = ("command", "args", "env")


def _check_shape(values: dict[str, Any]) -> None:
    """The fields a transport needs and the ones it cannot have; a personal server has no groups (400)."""
    if values["transport"] == Transport.streamable_http:
        if not values.get("url"):
            raise BadRequest("a streamable_http MCP server needs url (its MCP endpoint, e.g. https://host/mcp)")
        given = [f for f in ("command", "args", "env_names") if values.get(f)]
        if given:
            raise BadRequest(f"a streamable_http MCP server takes no {', '.join(given).replace('env_names', 'env')}")
    else:
        if not values.get("command"):
            raise BadRequest("a stdio MCP server needs command (the executable LISA runs)")
        given = [f for f in ("url", "header_names") if values.get(f)]
        if given:
            raise BadRequest(f"a stdio MCP server takes no {', '.join(given).replace('header_names', 'headers')}")
    if values.get("owner") is not None and values.get("allowed_groups"):
        raise BadRequest("a personal MCP server is only its owner's: allowed_groups applies to global servers")


class McpRegistrations:
    def __init__(self, store: McpServerStore, egress: EgressGuard, hosted: HostedServers) -> None:
        self.store = store
        self.egress = egress
        self.hosted = hosted

    def public(self, row: RowMapping, principal: Principal) -> McpServerPublic:
        admin = principal.is_admin
        stdio = row["transport"] == Transport.stdio
        return McpServerPublic.model_validate(
            {
                **row,
                "scope": Scope.global_ if row["owner"] is None else Scope.personal,
                "has_headers": row["headers_encrypted"] is not None,
                "has_env": row["env_encrypted"] is not None,
                "command": row["command"] if admin else None,
                "args": list(row["args"]) if admin and stdio else None,
                "process": self.hosted.status(row["id"]) if admin and stdio else None,
            }
        )

    async def visible_row(self, server_id: str, principal: Principal) -> RowMapping:
        row = await self.store.get(server_id)
        if row is None or not rules.visible(principal, row):
            raise NotFound(f"MCP server '{server_id}' not found")
        return row

    @staticmethod
    def check_manage(principal: Principal, row: RowMapping) -> None:
        if not rules.visible(principal, row):
            raise NotFound(f"MCP server '{row['id']}' not found")
        if not principal.is_admin and row["owner"] != principal.username:
            raise Forbidden("changing a global MCP server needs the admin group")

    async def _check_url(self, name: str, url: object) -> None:
        if url is not None:
            await self.egress.check_url(str(url), f"MCP server '{name}': url")

    def _secret_values(self, body: McpServerCreate | McpServerUpdate) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if "headers" in body.model_fields_set:
            headers = {k: v.get_secret_value() for k, v in (body.headers or {}).items()}
            values["headers_encrypted"], values["header_names"] = self.store.seal(headers)
        if "env" in body.model_fields_set:
            env = {k: v.get_secret_value() for k, v in (body.env or {}).items()}
            values["env_encrypted"], values["env_names"] = self.store.seal(env)
        return values

    @staticmethod
    def _plain_values(body: McpServerCreate | McpServerUpdate) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key in ("name", "description", "url", "command", "args", "allowed_groups", "enabled", "tools_allowed"):
            if key not in body.model_fields_set:
                continue
            value = getattr(body, key)
            if key == "url" and value is not None:
                value = str(value)
            elif key == "allowed_groups":
                value = sorted(set(value or []))
            elif key == "args":
                value = list(value or [])
            elif key == "tools_allowed":
                value = sorted(set(value)) if value else None
            elif key == "description":
                value = value or ""
            elif key in ("name", "enabled") and value is None:
                raise BadRequest(f"{key} cannot be null")
            values[key] = value
        return values

    async def create(self, body: McpServerCreate, principal: Principal) -> McpServerPublic:
        if body.scope == Scope.global_ and not principal.is_admin:
            raise Forbidden("registering a global MCP server needs the admin group")
        if body.transport == Transport.stdio and not principal.is_admin:
            raise Forbidden("a stdio MCP server runs a command on the LISA server: admins only")
        values = {
            "id": new_id(),
            "description": "",
            "args": [],
            "allowed_groups": [],
            "enabled": True,
            "tools_allowed": None,
            **self._plain_values(body),
            **self._secret_values(body),
            "transport": body.transport.value,
            "owner": principal.username if body.scope == Scope.personal else None,
            "created_by": principal.username,
        }
        _check_shape(values)
        await self._check_url(body.name, values.get("url"))
        return self.public(await self.store.insert(values, principal), principal)

    async def get(self, server_id: str, principal: Principal) -> McpServerPublic:
        return self.public(await self.visible_row(server_id, principal), principal)

    async def page(self, principal: Principal, params: PageParams, all_users: bool = False) -> McpServerPage:
        if all_users and not principal.is_admin:
            raise Forbidden("listing every user's MCP servers needs the admin group")
        rows, next_cursor = await self.store.page(rules.visible_filter(principal, all_users), params)
        return McpServerPage(data=[self.public(r, principal) for r in rows], next_cursor=next_cursor)

    async def update(self, server_id: str, body: McpServerUpdate, principal: Principal) -> McpServerPublic:
        if not principal.is_admin and any(f in body.model_fields_set for f in STDIO_FIELDS):
            raise Forbidden("a stdio MCP server runs a command on the LISA server: admins only")
        plain, sealed = self._plain_values(body), self._secret_values(body)
        await self._check_url(server_id, plain.get("url"))

        def changes(current: RowMapping) -> dict[str, Any]:
            self.check_manage(principal, current)
            _check_shape({**current, **plain, **sealed})
            return {**plain, **sealed}

        return self.public(await self.store.update(server_id, changes, principal), principal)

    async def delete(self, server_id: str, principal: Principal) -> None:
        row = await self.store.get(server_id)
        if row is None:
            raise NotFound(f"MCP server '{server_id}' not found")
        self.check_manage(principal, row)
        await self.store.delete(server_id, principal)
        await self.hosted.retire(server_id)
