"""Roles come from group membership, with the group names taken from configuration."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from backend.auth.principal import Principal
from backend.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Roles:
    admin_group: str = "admin"
    rag_admin_group: str = "rag-admin"
    user_group: str = ""  # when set, membership is needed to use the platform at all
    api_group: str = ""  # when set, membership is needed to create one's own API tokens

    def principal(
        self,
        username: str,
        groups: Iterable[str],
        *,
        token_id: str | None = None,
        expires_at: datetime | None = None,
        display_name: str | None = None,
        owner_groups: Iterable[str] | None = None,
    ) -> Principal:
        members = frozenset(groups)
        is_admin = self.admin_group in members
        if self.user_group and not is_admin and self.user_group not in members:
            who = display_name or username
            raise Forbidden(f"'{who}' is not a member of the group '{self.user_group}' that may use LISA")
        return Principal(
            username=username,
            groups=members,
            is_admin=is_admin,
            is_rag_admin=is_admin or self.rag_admin_group in members,
            token_id=token_id,
            expires_at=expires_at,
            display_name=display_name,
            owner_groups=None if owner_groups is None else frozenset(owner_groups),
        )

    def may_create_own_tokens(self, principal: Principal) -> bool:
        return principal.is_admin or not self.api_group or self.api_group in principal.groups
