"""The per-process service graph: built once at start-up, torn down at shutdown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from backend.auth.authenticator import Authenticator
from backend.auth.oidc import OIDCVerifier
from backend.auth.roles import Roles
from backend.auth.tokens import TokenStore
from backend.config import Settings
from backend.db.changes import ChangeFeed
from backend.db.engine import asyncpg_dsn, create_engine
from backend.limits.limiter import Limiter
from backend.limits.store import LimitStore
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
    limits: LimitStore
    limiter: Limiter
    oauth: Any = None  # authlib's client for the browser sign-in, when OIDC is configured

    @classmethod
    def build(cls, settings: Settings, database_url: str) -> Services:
        engine = create_engine(database_url, settings.db_pool_size)
        feed = ChangeFeed(asyncpg_dsn(database_url))
        tokens = TokenStore(engine, on_commit=feed.dispatch)
        roles = Roles(settings.admin_group, settings.rag_admin_group, settings.user_group, settings.api_group)
        oidc = None
        if settings.oidc_enabled:
            oidc = OIDCVerifier(
                settings.oidc_issuer,
                settings.oidc_audience or settings.oidc_client_id,
                settings.oidc_groups_claim,
                settings.oidc_username_claims,
                leeway_seconds=settings.oidc_leeway_seconds,
            )
        authenticator = Authenticator(tokens, roles, settings.auth_cache_seconds, oidc)
        registry = ModelRegistry(engine, SecretBox(settings.secret_key.get_secret_value()), on_commit=feed.dispatch)
        routes = RouteTable(registry, feed_connected=feed.connected.is_set)
        feed.subscribe(authenticator.on_change)
        feed.subscribe(routes.on_change)
        meter = UsageMeter(engine, settings.usage_flush_seconds, settings.usage_batch_size)
        limits = LimitStore(engine, on_commit=feed.dispatch)
        feed.subscribe(limits.on_change)
        limiter = Limiter(engine)
        passthrough = Passthrough(settings.upstream_connect_timeout, settings.upstream_read_timeout)
        gateway = Gateway(
            authenticator=authenticator,
            routes=routes,
            passthrough=passthrough,
            litellm=LiteLLMBackend(settings.upstream_read_timeout),
            meter=meter,
            limits=limits,
            limiter=limiter,
            max_body=settings.max_request_bytes,
            default_reserve_tokens=settings.limit_default_reserve_tokens,
        )
        oauth = None
        if settings.oidc_enabled:
            from backend.api.routes.oidc_login import oauth_client

            oauth = oauth_client(settings)
        return cls(
            settings, engine, feed, tokens, authenticator, registry, routes, meter, passthrough, gateway, limits, limiter,
            oauth,
        )  # fmt: skip

    async def start(self) -> None:
        await self.feed.start()
        await self.passthrough.start()
        self.meter.start()

    async def stop(self) -> None:
        await self.meter.stop()
        await self.passthrough.stop()
        await self.feed.stop()
        if self.authenticator.oidc is not None:
            await self.authenticator.oidc.aclose()
        await self.engine.dispose()
