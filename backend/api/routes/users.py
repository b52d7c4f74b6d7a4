"""/api/users: who people are. Ids are stable (issuer + ``sub`` for OIDC users); names are for reading only."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import AdminUser, CurrentUser, Paging, ServicesDep
from backend.paging import Page

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
    model_config = ConfigDict(from_attributes=True)

    id: str
    issuer: str
    subject: str
    display_name: str
    groups: list[str] = Field(description="OIDC users: as the provider last confirmed them.")
    groups_confirmed_at: datetime | None
    created_at: datetime
    last_seen_at: datetime


class UserPage(Page[UserPublic]):
    pass


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
    page: Paging,
    display_name: str | None = Query(default=None, max_length=256, description="Only users with this name."),
) -> UserPage:
    rows, next_cursor = await services.authenticator.users.page(page, name=display_name)
    return UserPage(data=[UserPublic.model_validate(r) for r in rows], next_cursor=next_cursor)
