"""The per-process view of the registry the gateway routes by: loaded once, reloaded after any change.

While the database is unreachable the last snapshot keeps serving (the registry cannot change meanwhile), retried
once a second; before any snapshot was loaded, requests answer 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from backend.db.outage import OutageGate
from backend.errors import DatabaseUnavailable
from backend.registry.schemas import ModelRoute
from backend.registry.service import TOPIC, ModelRegistry


class RouteTable:
    def __init__(self, registry: ModelRegistry, feed_connected: Callable[[], bool] = lambda: True) -> None:
        self._registry = registry
        self._feed_connected = feed_connected
        self._loaded_at = 0.0
        self._routes: dict[str, ModelRoute] = {}
        self._version = 0  # bumped by every change notice
        self._loaded_version = -1
        self._lock = asyncio.Lock()
        self._gate = OutageGate("model routes")

    def on_change(self, topic: str) -> None:
        if topic in (TOPIC, "*"):
            self._version += 1

    @property
    def version(self) -> int:
        return self._loaded_version

    async def snapshot(self) -> dict[str, ModelRoute]:
        # Without change notices (feed down) trust the cache for one second at most.
        if not self._feed_connected() and time.monotonic() - self._loaded_at > 1.0:
            self._version += 1
        if self._loaded_version == self._version:
            return self._routes
        if self._gate.closed():
            return self._stale()
        async with self._lock:
            while self._loaded_version != self._version:
                if self._gate.closed():
                    return self._stale()
                target = self._version
                try:
                    routes = await self._gate.load(self._registry.routes)
                except DatabaseUnavailable:
                    return self._stale()
                self._routes = routes
                self._loaded_version = target
                self._loaded_at = time.monotonic()
        return self._routes

    def _stale(self) -> dict[str, ModelRoute]:
        if self._loaded_version < 0:  # nothing loaded yet: nothing to route by
            raise self._gate.unavailable()
        return self._routes

    async def get(self, model_id: str) -> ModelRoute | None:
        routes = await self.snapshot()
        return routes.get(model_id)
