"""Who is calling: the identity every route and the gateway act for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


@dataclass(frozen=True, slots=True)
class Principal:
    username: str  # the stable identity (users.id): never an editable claim; see backend/auth/users.py
    groups: frozenset[str]  # what this credential may use: a token's own groups ∩ its owner's current groups
    is_admin: bool
    is_rag_admin: bool = False
    token_id: str | None = None
    expires_at: datetime | None = None
    display_name: str | None = None  # for people to read; never used to decide anything
    owner_groups: frozenset[str] | None = None  # the owner's own groups, however a token narrows; None: ``groups``

    @property
    def limit_groups(self) -> frozenset[str]:
        """The groups whose limits and budgets apply: the owner's, whatever a token narrows for access."""
        return self.groups if self.owner_groups is None else self.owner_groups | self.groups


def can_access(principal: Principal, allowed_groups: list[str] | tuple[str, ...]) -> bool:
    """The one access rule for every resource with ``allowed_groups``: empty means everyone; admins see all."""
    if principal.is_admin or not allowed_groups:
        return True
    return not principal.groups.isdisjoint(allowed_groups)


def access_filter(principal: Principal, allowed_groups: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """``can_access`` as a SQL condition on a JSONB ``allowed_groups`` column, so that paged lists filter in SQL."""
    if principal.is_admin:
        return sa.true()
    open_to_all = sa.func.jsonb_array_length(allowed_groups) == 0
    if not principal.groups:
        return open_to_all
    shares_a_group = allowed_groups.op("?|", is_comparison=True)(
        postgresql.array(sorted(principal.groups), type_=sa.Text)
    )
    return sa.or_(open_to_all, shares_a_group)
