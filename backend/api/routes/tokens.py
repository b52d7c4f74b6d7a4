"""/api/tokens: API tokens. The secret is shown once, at creation; only its SHA-256 hash is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from backend.api.deps import CurrentUser, ServicesDep
from backend.auth.tokens import TokenRow
from backend.errors import BadRequest, Forbidden, NotFound
from backend.registry.service import decode_cursor, encode_cursor

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    expires_at: datetime | None = Field(default=None, description="ISO 8601; overrides expires_in_days.")
    username: str | None = Field(default=None, min_length=1, max_length=256, description="Admins only.")
    groups: list[str] | None = Field(default=None, description="Narrow the owner's groups (admins: any).")


class TokenPublic(BaseModel):
    id: str
    name: str
    prefix: str
    username: str
    groups: list[str]
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    active: bool


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret. It is shown this once and cannot be recovered.")


class TokenPage(BaseModel):
    data: list[TokenPublic]
    next_cursor: str | None


def _public(row: TokenRow) -> TokenPublic:
    now = datetime.now(UTC)
    return TokenPublic(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        username=row.username,
        groups=row.groups,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        active=row.revoked_at is None and row.expires_at > now,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_token(body: TokenCreate, user: CurrentUser, services: ServicesDep) -> TokenCreated:
    settings = services.settings
    now = datetime.now(UTC)
    if body.expires_at is not None:
        expires_at = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=UTC)
        if expires_at <= now:
            raise BadRequest("expires_at must be in the future")
    else:
        expires_at = now + timedelta(days=body.expires_in_days or settings.token_default_days)
    if expires_at > now + timedelta(days=settings.token_max_days):
        raise BadRequest(f"tokens may live at most {settings.token_max_days} days")
    if not services.authenticator.roles.may_create_own_tokens(user):
        raise Forbidden(f"creating API tokens needs the group '{services.settings.api_group}'")
    username = body.username or user.username
    if username != user.username and not user.is_admin:
        raise Forbidden("only admins may create tokens for another user")
    groups = sorted(user.groups) if body.groups is None else sorted(set(body.groups))
    if not user.is_admin and not set(groups) <= user.groups:
        raise Forbidden("a token may only carry groups its owner has")
    row, secret = await services.tokens.create(
        name=body.name, username=username, groups=groups, created_by=user.username, expires_at=expires_at, actor=user
    )
    return TokenCreated(**_public(row).model_dump(), token=secret)


@router.get("")
async def list_tokens(
    user: CurrentUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
    all_users: bool = Query(default=False, description="Admins: list every user's tokens."),
) -> TokenPage:
    if all_users and not user.is_admin:
        raise Forbidden("only admins may list every user's tokens")
    rows = await services.tokens.page(
        username=None if all_users else user.username, after_id=decode_cursor(cursor), limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return TokenPage(data=[_public(r) for r in rows], next_cursor=encode_cursor(rows[-1].id) if more and rows else None)


@router.get("/{token_id}")
async def get_token(token_id: str, user: CurrentUser, services: ServicesDep) -> TokenPublic:
    row = await services.tokens.get(token_id)
    if row is None or (row.username != user.username and not user.is_admin):
        raise NotFound(f"token '{token_id}' not found")
    return _public(row)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(token_id: str, user: CurrentUser, services: ServicesDep) -> None:
    row = await services.tokens.get(token_id)
    if row is None or (row.username != user.username and not user.is_admin):
        raise NotFound(f"token '{token_id}' not found")
    await services.tokens.revoke(token_id, actor=user)
