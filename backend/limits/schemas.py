"""Limits per user, group or token: requests and tokens per minute, parallel requests, a token budget per period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Scope(StrEnum):
    user = "user"
    group = "group"  # applies to each member of the group who has no limit of their own
    token = "token"


class Period(StrEnum):
    day = "day"
    month = "month"


class LimitSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(default=None, ge=1, le=1_000_000, description="requests per minute (sliding window)")
    tpm: int | None = Field(default=None, ge=1, le=1_000_000_000, description="tokens per minute (sliding window)")
    parallel: int | None = Field(default=None, ge=1, le=10_000, description="requests in flight at once")
    budget_tokens: int | None = Field(default=None, ge=1, le=10**18, description="tokens per budget period")
    budget_period: Period | None = None

    @model_validator(mode="after")
    def _budget_needs_period(self) -> LimitSet:
        if (self.budget_tokens is None) != (self.budget_period is None):
            raise ValueError("budget_tokens and budget_period go together")
        if all(v is None for v in (self.rpm, self.tpm, self.parallel, self.budget_tokens)):
            raise ValueError("set at least one of rpm, tpm, parallel, budget_tokens")
        return self


class LimitPublic(LimitSet):
    model_config = ConfigDict(extra="ignore")  # read from its table row, which holds more columns

    scope: Scope
    subject: str
    updated_at: datetime


class LimitPage(BaseModel):
    data: list[LimitPublic]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One counter the limiter enforces atomically: ``user:alice`` or ``token:tok_...``."""

    key: str
    rpm: int | None
    tpm: int | None
    parallel: int | None
    budget_tokens: int | None
    budget_period: Period | None


class BucketUsage(BaseModel):
    key: str
    limits: LimitSet
    requests_last_minute: int
    tokens_last_minute: int
    in_flight: int
    budget_used: int | None
    budget_resets_at: datetime | None


class MyLimits(BaseModel):
    buckets: list[BucketUsage]
