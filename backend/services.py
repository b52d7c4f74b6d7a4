"""The per-process service graph: built once at start-up, torn down at shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.authenticator import Authenticator
from backend.auth.tokens import TokenStore
from backend.config import Settings
from backend.db.changes import ChangeFeed
from backend.db.engine import asyncpg_dsn, create_engine
from backend.registry.route_table import RouteTable
from backend.registry.secrets import SecretBox
from backend.registry.service import ModelRegistry
from backend.serve.gateway import Gateway
from backend.serve.litellm_backend import LiteLLMBackend
from backend.serve.passthrough import Passthrough
from backend.usage.meter import UsageMeter


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    feed: ChangeFeed
    tokens: TokenStore
    authenticator: Authenticator
    registry: ModelRegistry
    routes: RouteTable
    meter: UsageMeter
    passthrough: Passthrough
    gateway: Gateway

    @classmethod
    def build(cls, settings: Settings, database_url: str) -> Services:
        engine = create_engine(database_url, settings.db_pool_size)
        feed = ChangeFeed(asyncpg_dsn(database_url))
        tokens = TokenStore(engine, on_commit=feed.dispatch)
        authenticator = Authenticator(tokens, settings.admin_group, settings.auth_cache_seconds)
        registry = ModelRegistry(engine, SecretBox(settings.secret_key.get_secret_value()), on_commit=feed.dispatch)
        routes = RouteTable(registry, feed_connected=feed.connected.is_set)
        feed.subscribe(authenticator.on_change)
        feed.subscribe(routes.on_change)
        meter = UsageMeter(engine, settings.usage_flush_seconds, settings.usage_batch_size)
        passthrough = Passthrough(settings.upstream_connect_timeout, settings.upstream_read_timeout)
        gateway = Gateway(
            authenticator=authenticator,
            routes=routes,
            passthrough=passthrough,
            litellm=LiteLLMBackend(settings.upstream_read_timeout),
            meter=meter,
            max_body=settings.max_request_bytes,
        )
        return cls(settings, engine, feed, tokens, authenticator, registry, routes, meter, passthrough, gateway)

    async def start(self) -> None:
        await self.feed.start()
        await self.passthrough.start()
        self.meter.start()

    async def stop(self) -> None:
        await self.meter.stop()
        await self.passthrough.stop()
        await self.feed.stop()
        await self.engine.dispose()
