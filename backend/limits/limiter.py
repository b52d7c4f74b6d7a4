"""Atomic enforcement of limits across every backend process, with PostgreSQL as the shared state.

Admission takes a transaction-scoped advisory lock per bucket, reads the bucket's sliding-minute log, in-flight
rows and budget, works out how many tokens each token-limited bucket has left, and either grants the request a
completion that fits (recording it with that reservation) or refuses it with a Retry-After, all in one
transaction. Settlement replaces the reservation with the real token count. Principals without limits never reach this code,
so the gateway's hot path pays nothing for it.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.db.outage import outage_reason
from backend.errors import DatabaseUnavailable, RateLimited
from backend.limits.schemas import Bucket, BucketUsage, LimitSet, Period

log = logging.getLogger(__name__)
WINDOW = timedelta(seconds=60)
STALE_IN_FLIGHT = timedelta(minutes=15)  # a process that died mid-request frees its slot after this


def period_bounds(period: Period, now: datetime) -> tuple[datetime, datetime]:
    if period == Period.day:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


async def _in_flight(conn: AsyncConnection, key: str) -> int:
    result = await conn.execute(text("SELECT count(*) FROM limit_inflight WHERE key = :k"), {"k": key})
    return int(result.scalar_one())


async def _budget(conn: AsyncConnection, key: str, start: datetime, *, with_reserved: bool) -> int:
    column = "used + reserved" if with_reserved else "used"
    result = await conn.execute(
        text(f"SELECT {column} FROM limit_budget WHERE key = :k AND period_start = :p"), {"k": key, "p": start}
    )
    return int(result.scalar_one_or_none() or 0)


@dataclass(frozen=True, slots=True)
class Demand:
    """What a request asks of the limits: its prompt, ``completion`` tokens per choice (None: no bound known) and
    the number of choices."""

    prompt: int
    completion: int | None
    choices: int = 1


@dataclass
class Ticket:
    request_id: str
    reserve: int
    completion: int | None = None  # tokens per choice the request may generate; None: no token limit applies
    hit_ids: list[int] = field(default_factory=list)
    budgets: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Room:
    """Tokens a bucket has left now, and how long until it has more."""

    key: str
    tokens: int
    wait: float
    why: str


class Limiter:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def admit(self, buckets: list[Bucket], demand: Demand) -> Ticket:
        """Admit a request against every bucket in one transaction, or refuse it with a Retry-After.

        Token limits (tpm, budget) grant each choice at most what the tightest bucket has left after the prompt,
        capped by ``demand.completion``; the reservation (prompt + choices x grant) is recorded in the same
        transaction, so concurrent requests, in any process, share what is left and none can overdraw it.

        Limits are enforced in the database only: while it is unreachable a limited caller is refused with 503
        (fail closed), and callers without limits, who never come here, are served from the caches.
        """
        try:
            return await self._admit(buckets, demand)
        except Exception as exc:
            if (reason := outage_reason(exc)) is None:
                raise
            raise DatabaseUnavailable(f"this caller's limits cannot be checked ({reason})") from exc

    async def _admit(self, buckets: list[Bucket], demand: Demand) -> Ticket:
        async with self.engine.begin() as conn:
            for bucket in sorted(buckets, key=lambda b: b.key):  # one lock order: no deadlocks
                await conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 7419))"), {"k": bucket.key})
            now: datetime = (await conn.execute(text("SELECT now()"))).scalar_one()
            rooms: list[Room] = []
            for b in buckets:
                if b.rpm or b.tpm:
                    await conn.execute(
                        text("DELETE FROM limit_hits WHERE key = :k AND at <= :cut"), {"k": b.key, "cut": now - WINDOW}
                    )
                    count, tokens, oldest = (
                        await conn.execute(
                            text("SELECT count(*), coalesce(sum(tokens), 0), min(at) FROM limit_hits WHERE key = :k"),
                            {"k": b.key},
                        )
                    ).one()
                    wait = (oldest + WINDOW - now).total_seconds() if oldest else 1.0
                    if b.rpm and count >= b.rpm:
                        raise RateLimited(f"{b.key}: {b.rpm} requests per minute reached", wait)
                    if b.tpm:
                        rooms.append(Room(b.key, b.tpm - int(tokens), wait, f"{b.tpm} tokens per minute"))
                if b.parallel:
                    await conn.execute(
                        text("DELETE FROM limit_inflight WHERE key = :k AND started_at <= :cut"),
                        {"k": b.key, "cut": now - STALE_IN_FLIGHT},
                    )
                    if await _in_flight(conn, b.key) >= b.parallel:
                        raise RateLimited(f"{b.key}: {b.parallel} requests already in flight", 1.0)
                if b.budget_tokens and b.budget_period:
                    start, end = period_bounds(b.budget_period, now)
                    spent = await _budget(conn, b.key, start, with_reserved=True)
                    why = f"token budget of {b.budget_tokens} per {b.budget_period.value}"
                    rooms.append(Room(b.key, b.budget_tokens - spent, (end - now).total_seconds(), why))
            ticket = _grant(rooms, demand)
            # Admitted by every bucket: record it.
            for b in buckets:
                if b.rpm or b.tpm:
                    hit = await conn.execute(
                        text("INSERT INTO limit_hits (key, at, tokens) VALUES (:k, :at, :t) RETURNING id"),
                        {"k": b.key, "at": now, "t": ticket.reserve},
                    )
                    ticket.hit_ids.append(hit.scalar_one())
                if b.parallel:
                    await conn.execute(
                        text("INSERT INTO limit_inflight (request_id, key, started_at) VALUES (:r, :k, :at)"),
                        {"r": ticket.request_id, "k": b.key, "at": now},
                    )
                if b.budget_tokens and b.budget_period:
                    start, _ = period_bounds(b.budget_period, now)
                    await conn.execute(
                        text(
                            "INSERT INTO limit_budget (key, period_start, used, reserved) VALUES (:k, :p, 0, :r) "
                            "ON CONFLICT (key, period_start) DO UPDATE SET reserved = limit_budget.reserved + :r"
                        ),
                        {"k": b.key, "p": start, "r": ticket.reserve},
                    )
                    ticket.budgets.append((b.key, start))
        return ticket

    async def settle(self, ticket: Ticket, tokens: int) -> None:
        """Replace the reservation with what the request really used, and free its parallel slot.

        The answer has gone out by now: if the database went away meanwhile, the reservation stays as it was (the
        slot frees itself after STALE_IN_FLIGHT; the budget keeps the reserved tokens) and only a warning is logged.
        """
        try:
            await self._settle(ticket, tokens)
        except Exception as exc:
            if (reason := outage_reason(exc)) is None:
                raise
            log.warning("could not settle request %s against its limits: %s", ticket.request_id, reason)

    async def _settle(self, ticket: Ticket, tokens: int) -> None:
        async with self.engine.begin() as conn:
            if ticket.hit_ids:
                await conn.execute(
                    text("UPDATE limit_hits SET tokens = :t WHERE id = ANY(:ids)"), {"t": tokens, "ids": ticket.hit_ids}
                )
            await conn.execute(text("DELETE FROM limit_inflight WHERE request_id = :r"), {"r": ticket.request_id})
            for key, start in ticket.budgets:
                await conn.execute(
                    text(
                        "UPDATE limit_budget SET used = used + :t, reserved = greatest(reserved - :r, 0) "
                        "WHERE key = :k AND period_start = :p"
                    ),
                    {"t": tokens, "r": ticket.reserve, "k": key, "p": start},
                )

    async def usage(self, buckets: list[Bucket]) -> list[BucketUsage]:
        out = []
        async with self.engine.connect() as conn:
            now: datetime = (await conn.execute(text("SELECT now()"))).scalar_one()
            for b in buckets:
                count, tokens = (
                    await conn.execute(
                        text("SELECT count(*), coalesce(sum(tokens), 0) FROM limit_hits WHERE key = :k AND at > :cut"),
                        {"k": b.key, "cut": now - WINDOW},
                    )
                ).one()
                running = await _in_flight(conn, b.key)
                used = resets = None
                if b.budget_tokens and b.budget_period:
                    start, resets = period_bounds(b.budget_period, now)
                    used = await _budget(conn, b.key, start, with_reserved=False)
                limits = LimitSet.model_construct(
                    rpm=b.rpm,
                    tpm=b.tpm,
                    parallel=b.parallel,
                    budget_tokens=b.budget_tokens,
                    budget_period=b.budget_period,
                )
                out.append(BucketUsage(key=b.key, limits=limits, requests_last_minute=count, tokens_last_minute=int(tokens),
                                       in_flight=running, budget_used=used, budget_resets_at=resets))  # fmt: skip
        return out


def _grant(rooms: list[Room], demand: Demand) -> Ticket:
    """The ticket for ``demand`` given what each token-limited bucket has left (refused when nothing is)."""
    ticket = Ticket(request_id=secrets.token_hex(12), reserve=0)
    completion = demand.completion
    if rooms:
        tightest = min(rooms, key=lambda r: r.tokens)
        needed = demand.prompt + (demand.choices if demand.completion else 0)
        if tightest.tokens < max(1, needed):
            left = max(0, tightest.tokens)
            raise RateLimited(
                f"{tightest.key}: {tightest.why} reached ({left} tokens left; this request needs at least {needed})",
                tightest.wait,
            )
        per_choice = (tightest.tokens - demand.prompt) // demand.choices
        completion = per_choice if completion is None else min(completion, per_choice)
        ticket.completion = completion
    ticket.reserve = demand.prompt + demand.choices * (completion or 0)
    return ticket


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
