"""Which API tokens exist, per process, so a flood of made-up tokens costs no database lookups.

Every token hash the database holds (within a retention window after expiry) is kept here as a 64-bit prefix; a
credential whose hash is not among them is refused without a query. This is the negative cache for unknown
tokens, with memory bounded by the number of real tokens rather than by what a client sends. It learns new tokens
from the change feed (``tokens:new``) and, for a token created elsewhere a moment before its notification
arrives, by re-reading recently created tokens on a miss at most once per ``min_refresh_seconds``: however many
unknown tokens arrive, the database sees at most one small query per second per process. A full reload, which
also forgets expired tokens, happens every ``full_reload_seconds`` and whenever the feed was interrupted.

While the database is unreachable the last view stays: a token in it may exist (the authenticator's cache decides),
and one outside it answers 503 rather than 401, since the view could not be brought up to date.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from backend.db.outage import OutageGate
from backend.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

# Tokens committed this long after their creating transaction began are still found by an incremental refresh.
_LATE_COMMIT_MARGIN = timedelta(minutes=5)

Loader = Callable[[datetime | None], Awaitable[tuple[list[str], datetime]]]


def _key(token_hash: str) -> int:
    return int(token_hash[:16], 16)


class KnownTokens:
    def __init__(self, load: Loader, min_refresh_seconds: float = 1.0, full_reload_seconds: float = 600.0) -> None:
        self._load = load
        self._min_refresh = min_refresh_seconds
        self._full_every = full_reload_seconds
        self._keys: set[int] | None = None  # None: not loaded (or no longer trusted)
        self._since: datetime | None = None
        self._generation = 0  # bumped by every change notification
        self._loaded_generation = -1
        self._loaded_at = float("-inf")
        self._full_at = float("-inf")
        self._failed_at = float("-inf")
        self._lock = asyncio.Lock()
        self._gate = OutageGate("known API tokens")
        self.refreshes = 0

    def invalidate(self, *, full: bool = False) -> None:
        self._generation += 1
        if full:  # the next refresh reloads everything; the current view serves until then
            self._full_at = float("-inf")

    async def may_exist(self, token_hash: str) -> bool:
        """False only when no such token exists (as of a view at most ``min_refresh_seconds`` old, or newer than
        the last change notification); True means: ask the database."""
        key = _key(token_hash)
        keys = self._keys
        if keys is not None and key in keys:
            return True
        if self._stale():
            if self._gate.closed():  # the database was unreachable a moment ago: no waiting for it
                raise self._gate.unavailable()
            await self._refresh()
        keys = self._keys
        return keys is None or key in keys

    def _stale(self) -> bool:
        now = time.monotonic()
        if self._keys is None:  # never loaded, or the last load failed: retry, but not more than once a period
            return now - self._failed_at >= self._min_refresh
        return self._loaded_generation != self._generation or now - self._loaded_at >= self._min_refresh

    async def _refresh(self) -> None:
        async with self._lock:  # one query however many requests missed at once
            if not self._stale():
                return
            generation, started = self._generation, time.monotonic()
            full = self._keys is None or started - self._full_at >= self._full_every
            if self._gate.closed():
                raise self._gate.unavailable()
            since = None if full else self._since
            try:
                hashes, clock = await self._gate.load(lambda: self._load(since))
            except DatabaseUnavailable:
                raise
            except Exception as exc:  # the database decides, lookup by lookup, until it answers again
                log.warning("could not load the known-token index: %s", exc)
                self._keys, self._failed_at = None, started
                return
            keys = set() if full or self._keys is None else self._keys
            keys.update(_key(h) for h in hashes)
            self._keys = keys
            self._since = clock - _LATE_COMMIT_MARGIN
            self._loaded_generation, self._loaded_at = generation, started
            if full:
                self._full_at = started
            self.refreshes += 1
