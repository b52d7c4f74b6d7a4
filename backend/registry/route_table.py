"""The per-process view of the registry the gateway routes by: loaded once, reloaded after any change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

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
        if self._loaded_version != self._version:
            async with self._lock:
                while self._loaded_version != self._version:
                    target = self._version
                    self._routes = await self._registry.routes()
                    self._loaded_version = target
                    self._loaded_at = time.monotonic()
        return self._routes

    async def get(self, model_id: str) -> ModelRoute | None:
        routes = await self.snapshot()
        return routes.get(model_id)
