"""The admin's calls of the backend (models, configuration, tokens, limits, audit, usage, assistant stacks, MCP
servers), made as the signed-in user through that user's ``BackendClient``: the backend decides who may (403 to a
non-admin), the app never holds a credential of its own."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

from frontend.client import BackendClient
from frontend.schemas_admin import AdminModel, ConfigVersion, ModelEvent, UsageReport

JSON = dict[str, Any]


class AdminClient:
    def __init__(self, client: BackendClient) -> None:
        self.client = client

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client._request(method, path, **kwargs)
        return response.json() if response.content else None

    async def _all(self, path: str, limit: int = 100, **params: Any) -> list[JSON]:
        """Every page of a cursor-paged list."""
        rows: list[JSON] = []
        cursor: str | None = None
        while True:
            query = {"limit": limit, **{k: v for k, v in params.items() if v not in (None, "")}}
            if cursor:
                query["cursor"] = cursor
            page = await self._json("GET", path, params=query)
            rows += page["data"]
            if not (cursor := page.get("next_cursor")) or len(rows) >= 1000:
                return rows

    # --- models -----------------------------------------------------------------------------------------------
    async def models(self) -> list[AdminModel]:
        return [AdminModel.model_validate(m) for m in await self._all("/api/models")]

    async def create_model(self, body: JSON) -> JSON:
        """201 with the model, or 202 with the workflow deploying it."""
        result: JSON = await self._json("POST", "/api/models", json=body)
        return result

    async def model_events(self, model_id: str, limit: int = 20) -> list[ModelEvent]:
        page = await self._json("GET", f"/api/models/{model_id}/events", params={"limit": limit})
        return [ModelEvent.model_validate(e) for e in page["data"]]

    async def switch_model(self, model_id: str, enable: bool) -> None:
        await self._json("POST", f"/api/models/{model_id}/{'enable' if enable else 'disable'}")

    async def delete_model(self, model_id: str) -> None:
        await self._json("DELETE", f"/api/models/{model_id}")

    # --- configuration ----------------------------------------------------------------------------------------
    async def configuration(self) -> JSON:
        result: JSON = await self._json("GET", "/api/configuration")
        return result

    async def update_configuration(self, body: JSON) -> JSON:
        result: JSON = await self._json("PATCH", "/api/configuration", json=body)
        return result

    async def configuration_history(self, limit: int = 20) -> list[ConfigVersion]:
        page = await self._json("GET", "/api/configuration/history", params={"limit": limit})
        return [ConfigVersion.model_validate(v) for v in page["data"]]

    async def restore_configuration(self, version: int) -> None:
        await self._json("POST", f"/api/configuration/history/{version}/restore")

    # --- tokens, limits, audit --------------------------------------------------------------------------------
    async def tokens(self, username: str | None = None) -> list[JSON]:
        return await self._all("/api/tokens", username=username, all_users=None if username else "true")

    async def create_token(self, body: JSON) -> JSON:
        result: JSON = await self._json("POST", "/api/tokens", json=body)
        return result

    async def revoke_token(self, token_id: str) -> None:
        await self._json("DELETE", f"/api/tokens/{token_id}")

    async def limits(self) -> list[JSON]:
        return await self._all("/api/limits")

    async def set_limits(self, scope: str, subject: str, body: JSON) -> JSON:
        result: JSON = await self._json("PUT", f"/api/limits/{scope}/{subject}", json=body)
        return result

    async def delete_limits(self, scope: str, subject: str) -> None:
        await self._json("DELETE", f"/api/limits/{scope}/{subject}")

    async def audit(self, cursor: str | None = None, limit: int = 50, **filters: Any) -> JSON:
        params = {"limit": limit, **{k: v for k, v in filters.items() if v not in (None, "")}}
        if cursor:
            params["cursor"] = cursor
        result: JSON = await self._json("GET", "/api/audit", params=params)
        return result

    # --- usage ------------------------------------------------------------------------------------------------
    async def usage(self, start: datetime, end: datetime, group_by: str) -> UsageReport:
        params = {"start": start.isoformat(), "end": end.isoformat(), "group_by": group_by}
        return UsageReport.model_validate(await self._json("GET", "/api/usage", params=params))

    async def usage_series(self, edges: list[datetime], group_by: str) -> list[UsageReport]:
        """One report per interval between consecutive ``edges`` (the backend aggregates one range at a time)."""
        return list(await asyncio.gather(*(self.usage(a, b, group_by) for a, b in itertools.pairwise(edges))))

    # --- assistant stacks and MCP servers (plain JSON documents) ------------------------------------------------
    async def resources(self, path: str) -> list[JSON]:
        return await self._all(path)

    async def create_resource(self, path: str, body: JSON) -> JSON:
        result: JSON = await self._json("POST", path, json=body)
        return result

    async def update_resource(self, path: str, resource_id: str, body: JSON) -> JSON:
        result: JSON = await self._json("PATCH", f"{path}/{resource_id}", json=body)
        return result

    async def delete_resource(self, path: str, resource_id: str) -> None:
        await self._json("DELETE", f"{path}/{resource_id}")
