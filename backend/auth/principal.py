"""Who is calling: the identity every route and the gateway act for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    groups: frozenset[str]
    is_admin: bool
    is_rag_admin: bool = False
    token_id: str | None = None
    expires_at: datetime | None = None


def can_access(principal: Principal, allowed_groups: list[str] | tuple[str, ...]) -> bool:
    """The one access rule for every resource with ``allowed_groups``: empty means everyone; admins see all."""
    if principal.is_admin or not allowed_groups:
        return True
    return not principal.groups.isdisjoint(allowed_groups)
