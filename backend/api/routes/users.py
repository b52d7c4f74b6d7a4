"""/api/users: who people are. Ids are stable (issuer + ``sub`` for OIDC users); names are for reading only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from backend.api.deps import AdminUser, CurrentUser, ServicesDep
from backend.auth.users import UserRow
from backend.registry.service import decode_cursor, encode_cursor

router = APIRouter(prefix="/api/users", tags=["users"])


class Me(BaseModel):
    username: str = Field(description="Your stable id: what tokens, limits, usage and ownership refer to.")
    display_name: str | None
    groups: list[str] = Field(description="The groups this credential acts with.")
    limit_groups: list[str] = Field(description="The groups whose limits apply to you, however a token narrows.")
    is_admin: bool
    is_rag_admin: bool
    token_id: str | None
    expires_at: datetime | None


class UserPublic(BaseModel):
    id: str
    issuer: str
    subject: str
    display_name: str
    groups: list[str] = Field(description="OIDC users: as the provider last confirmed them.")
    groups_confirmed_at: datetime | None
    created_at: datetime
    last_seen_at: datetime


class UserPage(BaseModel):
    data: list[UserPublic]
    next_cursor: str | None


def _public(row: UserRow) -> UserPublic:
    return UserPublic(
        id=row.id, issuer=row.issuer, subject=row.subject, display_name=row.display_name, groups=row.groups,
        groups_confirmed_at=row.groups_confirmed_at, created_at=row.created_at, last_seen_at=row.last_seen_at,
    )  # fmt: skip


@router.get("/me")
async def me(user: CurrentUser) -> Me:
    return Me(
        username=user.username, display_name=user.display_name, groups=sorted(user.groups),
        limit_groups=sorted(user.limit_groups), is_admin=user.is_admin, is_rag_admin=user.is_rag_admin,
        token_id=user.token_id, expires_at=user.expires_at,
    )  # fmt: skip


@router.get("")
async def list_users(
    _admin: AdminUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
    display_name: str | None = Query(default=None, max_length=256, description="Only users with this name."),
) -> UserPage:
    rows = await services.authenticator.users.page(after_id=decode_cursor(cursor), limit=limit + 1, name=display_name)
    more = len(rows) > limit
    rows = rows[:limit]
    return UserPage(data=[_public(r) for r in rows], next_cursor=encode_cursor(rows[-1].id) if more and rows else None)
