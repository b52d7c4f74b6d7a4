"""/api/tokens: API tokens. The secret is shown once, at creation; only its SHA-256 hash is stored.

A token never outlives the credential that creates it (a token, a browser session, a provider JWT): an explicit
expiry beyond it is refused with 400, the default is cut to it. Revoking a token revokes the tokens made with it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field, computed_field

from backend.api.deps import CurrentUser, Paging, ServicesDep, requires
from backend.api.openapi import errors
from backend.auth.principal import Principal
from backend.auth.users import is_local_name
from backend.configuration.features import Feature
from backend.errors import BadRequest, Forbidden, NotFound
from backend.paging import Page
from backend.services import Services
from backend.text import Text

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


class TokenCreate(BaseModel):
    name: Text = Field(min_length=1, max_length=200)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    expires_at: datetime | None = Field(default=None, description="ISO 8601; overrides expires_in_days.")
    username: Text | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Admins only: the owner. A name (letters, digits, '._@+-') is a local user, created if new; "
        "an existing user's id (e.g. 'oidc:...') names that user.",
    )
    groups: list[Text] | None = Field(
        default=None,
        description="Narrow the owner's groups. Default: your own groups for your own token; for a token an admin "
        "makes for someone else, that user's confirmed groups (OIDC users) or none (local users).",
    )


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str
    username: str = Field(description="The owner's stable id.")
    display_name: str | None = Field(default=None, description="The owner's name, for people to read.")
    groups: list[str]
    created_by: str
    parent_id: str | None = Field(default=None, description="The token it was created with; revoking that one "
                                  "revokes this one.")  # fmt: skip
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def active(self) -> bool:
        return self.revoked_at is None and self.expires_at > datetime.now(UTC)


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret. It is shown this once and cannot be recovered.")


class TokenPage(Page[TokenPublic]):
    pass


class TokensRevoked(BaseModel):
    revoked: int = Field(description="Tokens revoked, including those created from them.")


def _expiry(body: TokenCreate, user: Principal, services: Services) -> datetime:
    settings = services.settings
    now = datetime.now(UTC)
    explicit = body.expires_at is not None or body.expires_in_days is not None
    if body.expires_at is not None:
        expires_at = body.expires_at if body.expires_at.tzinfo else body.expires_at.replace(tzinfo=UTC)
        if expires_at <= now:
            raise BadRequest("expires_at must be in the future")
    else:
        expires_at = now + timedelta(days=body.expires_in_days or settings.token_default_days)
    if expires_at > now + timedelta(days=settings.token_max_days):
        raise BadRequest(f"tokens may live at most {settings.token_max_days} days")
    limit = user.expires_at
    if limit is not None and expires_at > limit:
        if explicit:
            raise BadRequest(
                f"a token may not outlive the credential that creates it, which expires at {limit.isoformat()}"
            )
        expires_at = limit
    return expires_at


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=errors(404),
    dependencies=[requires(Feature.enable_user_api_tokens)],  # admins are exempt
)
async def create_token(body: TokenCreate, user: CurrentUser, services: ServicesDep) -> TokenCreated:
    expires_at = _expiry(body, user, services)
    if not services.authenticator.roles.may_create_own_tokens(user):
        raise Forbidden(f"creating API tokens needs the group '{services.settings.api_group}'")
    username = body.username or user.username
    if username == user.username:
        groups = sorted(user.groups) if body.groups is None else sorted(set(body.groups))
    elif not user.is_admin:
        raise Forbidden("only admins may create tokens for another user")
    elif ":" not in username:
        if not is_local_name(username):
            raise BadRequest(
                "a local user's name has letters, digits and '._@+-' (at most 128), first a letter or digit"
            )
        groups = sorted(set(body.groups or []))
    else:
        owner = await services.authenticator.users.get(username)
        if owner is None:
            raise NotFound(f"no user '{username}'")
        groups = sorted(owner.groups) if body.groups is None else sorted(set(body.groups))
    if not user.is_admin and not set(groups) <= user.groups:
        raise Forbidden("a token may only carry groups its owner has")
    row, secret = await services.tokens.create(
        name=body.name, username=username, groups=groups, created_by=user.username, expires_at=expires_at,
        actor=user, parent_id=user.token_id,
    )  # fmt: skip
    return TokenCreated.model_validate({**asdict(row), "token": secret})


def _owner_filter(user: Principal, username: str | None, all_users: bool) -> str | None:
    if all_users or (username is not None and username != user.username):
        if not user.is_admin:
            raise Forbidden("only admins may see or revoke another user's tokens")
        return None if all_users and username is None else username
    return user.username


@router.get("", responses=errors(403))
async def list_tokens(
    user: CurrentUser,
    services: ServicesDep,
    page: Paging,
    all_users: bool = Query(default=False, description="Admins: list every user's tokens."),
    username: str | None = Query(default=None, max_length=256, description="Admins: this user's tokens."),
) -> TokenPage:
    rows, next_cursor = await services.tokens.page(page, username=_owner_filter(user, username, all_users))
    return TokenPage(data=[TokenPublic.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.delete("")
async def revoke_user_tokens(
    user: CurrentUser,
    services: ServicesDep,
    username: str = Query(max_length=256, description="Whose tokens to revoke: your own id, or anyone's (admins)."),
) -> TokensRevoked:
    """Revoke every token of one user (and every token created from them)."""
    owner = _owner_filter(user, username, all_users=False)
    assert owner is not None
    return TokensRevoked(revoked=await services.tokens.revoke_user(owner, actor=user))


@router.get("/{token_id}", responses=errors(404))
async def get_token(token_id: str, user: CurrentUser, services: ServicesDep) -> TokenPublic:
    row = await services.tokens.get(token_id)
    if row is None or (row.username != user.username and not user.is_admin):
        raise NotFound(f"token '{token_id}' not found")
    return TokenPublic.model_validate(row)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def revoke_token(token_id: str, user: CurrentUser, services: ServicesDep) -> None:
    """Revoke a token and every token created from it."""
    row = await services.tokens.get(token_id)
    if row is None or (row.username != user.username and not user.is_admin):
        raise NotFound(f"token '{token_id}' not found")
    await services.tokens.revoke(token_id, actor=user)
