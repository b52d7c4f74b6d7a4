"""Typed results of the admin routes, as the Admin tab reads them (unknown fields ignored, as in frontend/schemas.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from frontend.schemas import Result


class AdminModel(Result):
    """A model of ``/api/models`` as an admin sees it (where it runs, why it failed)."""

    id: str
    name: str = ""
    type: str
    hosting: str
    status: str
    status_reason: str | None = None
    health: str = "unknown"
    provider_model: str | None = None
    base_url: str | None = None
    managed_by: str | None = None
    deployment: dict[str, Any] | None = None
    updated_at: datetime | None = None

    @property
    def where(self) -> str:
        if self.deployment:
            return f"deployed ({self.deployment.get('deployer', '?')})"
        return self.provider_model or self.base_url or ""


class ModelEvent(Result):
    at: datetime
    kind: str
    status: str | None = None
    step: str | None = None
    message: str


class Change(Result):
    field: str
    before: Any = None
    after: Any = None


class ConfigVersion(Result):
    version: int
    created_at: datetime
    created_by: str
    restored_from: int | None = None
    changes: list[Change] = Field(default_factory=list)


class UsageRow(Result):
    model: str | None = None
    username: str | None = None
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    avg_latency_ms: float = 0.0
    p95_latency_ms: float = 0.0


class UsageReport(Result):
    start: datetime
    end: datetime
    rows: list[UsageRow] = Field(default_factory=list)
