"""The configuration in force, cached per process and reloaded after any change; enforcement of the toggles.

Which value wins (docs/configuration.md): a toggle the deployment pins (``Settings.features``, e.g.
``LISA_FEATURES__UPLOAD_RAG_DOCS=false``) wins over the stored one, and writes naming it are refused with 409; else
the value an admin stored; else the default. Every answer says which one applies and why.

Freshness: a write notifies every backend process through the change feed (backend/db/changes.py); each reloads on
its next use. Without the feed, the cache is trusted for a second at most. While the database is unreachable the
last configuration keeps serving (it cannot change meanwhile); before any was loaded, checks answer 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from backend.auth.principal import Principal
from backend.configuration.features import FEATURES, Feature, exempt
from backend.configuration.pins import Pin
from backend.configuration.schemas import (
    Banner,
    ConfigurationPublic,
    ConfigurationReplace,
    ConfigurationUpdate,
    ConfigurationVersion,
    ConfigurationVersionPage,
    FeatureState,
    Source,
)
from backend.configuration.store import TOPIC, ConfigurationStore, Stored
from backend.db.outage import OutageGate
from backend.errors import Conflict, DatabaseUnavailable, Forbidden
from backend.paging import PageParams


@dataclass(frozen=True, slots=True)
class Snapshot:
    stored: Stored
    enabled: dict[Feature, bool]
    sources: dict[Feature, Source]


class ConfigurationService:
    def __init__(
        self,
        store: ConfigurationStore,
        pins: dict[Feature, Pin] | None = None,
        feed_connected: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.pins = pins or {}
        self._feed_connected = feed_connected
        self._snapshot: Snapshot | None = None
        self._version = 0  # bumped by every change notice (and when the feed was interrupted)
        self._loaded_version = -1
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self._gate = OutageGate("configuration")

    def on_change(self, topic: str) -> None:
        if topic in (TOPIC, "*"):
            self._version += 1

    # --- reading ------------------------------------------------------------------------------------------------
    def _resolve(self, stored: Stored) -> Snapshot:
        enabled: dict[Feature, bool] = {}
        sources: dict[Feature, Source] = {}
        for feature, info in FEATURES.items():
            if (pin := self.pins.get(feature)) is not None:
                enabled[feature], sources[feature] = pin.value, Source.environment
            elif (value := stored.features.get(feature.value)) is not None:
                enabled[feature], sources[feature] = value, Source.stored
            else:
                enabled[feature], sources[feature] = info.default, Source.default
        return Snapshot(stored, enabled, sources)

    async def snapshot(self) -> Snapshot:
        if not self._feed_connected() and time.monotonic() - self._loaded_at > 1.0:
            self._version += 1
        if self._snapshot is not None and self._loaded_version == self._version:
            return self._snapshot
        if self._gate.closed():
            return self._stale()
        async with self._lock:
            while self._snapshot is None or self._loaded_version != self._version:
                if self._gate.closed():
                    return self._stale()
                target = self._version
                try:
                    stored = await self._gate.load(self.store.latest)
                except DatabaseUnavailable:
                    return self._stale()
                self._snapshot = self._resolve(stored)
                self._loaded_version, self._loaded_at = target, time.monotonic()
            return self._snapshot

    def _stale(self) -> Snapshot:
        if self._snapshot is None:
            raise self._gate.unavailable()
        return self._snapshot

    def _public(self, snapshot: Snapshot, principal: Principal) -> ConfigurationPublic:
        stored = snapshot.stored
        features = {
            feature: FeatureState(
                enabled=snapshot.enabled[feature],
                source=snapshot.sources[feature],
                default=info.default,
                stored=stored.features.get(feature.value),
                pinned_by=pin.setting if (pin := self.pins.get(feature)) else None,
                allowed=snapshot.enabled[feature] or exempt(feature, principal),
                description=info.description,
            )
            for feature, info in FEATURES.items()
        }
        return ConfigurationPublic(
            version=stored.version,
            updated_at=stored.created_at,
            updated_by=stored.created_by if principal.is_admin else None,
            features=features,
            banner=Banner.model_validate(stored.banner),
            default_model_id=stored.default_model_id,
        )

    async def public(self, principal: Principal) -> ConfigurationPublic:
        return self._public(await self.snapshot(), principal)

    # --- enforcement --------------------------------------------------------------------------------------------
    async def enabled(self, feature: Feature, principal: Principal) -> bool:
        """Whether ``principal`` may use ``feature`` (for code that adapts, e.g. leaves metadata out, rather than
        refusing)."""
        return exempt(feature, principal) or (await self.snapshot()).enabled[feature]

    async def require(self, feature: Feature, principal: Principal) -> None:
        """Forbidden (403) naming the toggle and who turned it off, unless ``principal`` may use ``feature``."""
        if exempt(feature, principal):  # before any lookup: admins never wait on the database for this
            return
        snapshot = await self.snapshot()
        if snapshot.enabled[feature]:
            return
        source = snapshot.sources[feature]
        if source is Source.environment:
            raise Forbidden(
                f"the feature '{feature}' is turned off by the deployment's settings ({self.pins[feature].setting})"
            )
        if source is Source.stored:
            raise Forbidden(f"the feature '{feature}' is turned off by an administrator")
        raise Forbidden(f"the feature '{feature}' is off unless an administrator turns it on")

    # --- writing ------------------------------------------------------------------------------------------------
    def _refuse_pinned(self, features: Iterable[Feature]) -> None:
        for feature in sorted(features):
            if (pin := self.pins.get(feature)) is not None:
                raise Conflict(self._pinned_message(feature, pin))

    @staticmethod
    def _pinned_message(feature: Feature, pin: Pin) -> str:
        return (
            f"the feature '{feature}' is pinned to {str(pin.value).lower()} by the deployment's settings "
            f"({pin.setting}), which win over stored values: change it there, or remove that setting to manage the "
            "toggle here"
        )

    def _written(self, stored: Stored, actor: Principal) -> ConfigurationPublic:
        return self._public(self._resolve(stored), actor)

    async def replace(self, body: ConfigurationReplace, actor: Principal) -> ConfigurationPublic:
        """The whole stored configuration; pinned toggles keep what is stored for them."""
        self._refuse_pinned(body.features)
        pinned = {feature.value for feature in self.pins}

        def make(current: Stored) -> Stored:
            kept = {name: value for name, value in current.features.items() if name in pinned}
            return replace(
                current,
                features={**{f.value: v for f, v in body.features.items()}, **kept},
                banner=body.banner.model_dump(),
                default_model_id=body.default_model_id,
            )

        return self._written(await self.store.write(actor, make), actor)

    async def update(self, body: ConfigurationUpdate, actor: Principal) -> ConfigurationPublic:
        self._refuse_pinned(body.features)

        def make(current: Stored) -> Stored:
            features = dict(current.features)
            for feature, value in body.features.items():
                if value is None:
                    features.pop(feature.value, None)
                else:
                    features[feature.value] = value
            return replace(
                current,
                features=features,
                banner=body.banner.model_dump() if body.banner is not None else current.banner,
                default_model_id=body.default_model_id
                if "default_model_id" in body.model_fields_set
                else current.default_model_id,
            )

        return self._written(await self.store.write(actor, make), actor)

    async def restore(self, version: int, actor: Principal) -> ConfigurationPublic:
        """A new version with the stored values of an old one. Refused (409) where it would change what is stored
        for a pinned toggle; refused (400) when its default model is gone from the registry."""
        old = await self.store.version(version)

        def make(current: Stored) -> Stored:
            for feature, pin in sorted(self.pins.items()):
                if old.features.get(feature.value) != current.features.get(feature.value):
                    raise Conflict(f"version {version} sets a pinned toggle: {self._pinned_message(feature, pin)}")
            return replace(
                current,
                features=dict(old.features),
                banner=old.banner.model_dump(),
                default_model_id=old.default_model_id,
            )

        return self._written(await self.store.write(actor, make, restored_from=version), actor)

    async def version(self, version: int) -> ConfigurationVersion:
        return await self.store.version(version)

    async def history(self, params: PageParams) -> ConfigurationVersionPage:
        return await self.store.page(params)
