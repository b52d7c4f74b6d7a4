"""Prompt templates: the SQL, the sharing rules, revisions with rollback, and filling in placeholders.

Who sees what (a template one may not see answers 404, as if it did not exist):
- the owner sees their own templates, whatever their sharing;
- a 'groups' template is seen by members of any of its groups, a 'public' one by every signed-in user;
- admins also see every 'groups' template (as every ``allowed_groups`` check lets admins through), but never another
  user's private one: private stays private.
Only the owner changes a template, restores a revision or reads its revisions; anyone else who can see it gets 403
(the history may hold text from before it was shared). The owner or an admin deletes it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal
from backend.db import tables
from backend.errors import BadRequest, Forbidden, NotFound
from backend.paging import PageParams, read_page
from backend.prompts.placeholders import fill
from backend.prompts.schemas import (
    Rendered,
    RevisionPage,
    RevisionPublic,
    Scope,
    Sharing,
    TemplateCreate,
    TemplateKind,
    TemplatePage,
    TemplatePublic,
    TemplateUpdate,
    check_sharing,
    with_variables,
)

T = tables.prompt_templates
R = tables.prompt_template_revisions
MAX_SEARCH_CHARS = 200


def new_template_id() -> str:
    """Time-ordered (microseconds, then randomness): newest first is id order, which pages stably."""
    return f"pt-{time.time_ns() // 1000:014x}{secrets.token_hex(4)}"


def visible_filter(principal: Principal) -> sa.ColumnElement[bool]:
    """``can_see`` as a SQL condition, so that paged lists filter in SQL."""
    conditions: list[sa.ColumnElement[bool]] = [
        T.c.owner == principal.username,
        T.c.sharing == Sharing.public.value,
    ]
    if principal.is_admin:
        conditions.append(T.c.sharing == Sharing.groups.value)
    elif principal.groups:
        shares_a_group = T.c.groups.op("?|", is_comparison=True)(
            postgresql.array(sorted(principal.groups), type_=sa.Text)
        )
        conditions.append(sa.and_(T.c.sharing == Sharing.groups.value, shares_a_group))
    return sa.or_(*conditions)


def can_see(principal: Principal, row: RowMapping) -> bool:
    if row["owner"] == principal.username or row["sharing"] == Sharing.public.value:
        return True
    if row["sharing"] == Sharing.groups.value:
        return principal.is_admin or not principal.groups.isdisjoint(row["groups"])
    return False


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def to_public(row: RowMapping) -> TemplatePublic:
    return TemplatePublic.model_validate(with_variables(row))


class PromptTemplateService:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # --- reads -----------------------------------------------------------------------------------------------
    async def _visible(
        self, conn: AsyncConnection, template_id: str, principal: Principal, *, lock: bool = False
    ) -> RowMapping:
        query = sa.select(T).where(T.c.id == template_id)
        row = (await conn.execute(query.with_for_update() if lock else query)).first()
        if row is None or not can_see(principal, row._mapping):
            raise NotFound(f"prompt template '{template_id}' not found")
        return row._mapping

    async def get(self, template_id: str, principal: Principal) -> TemplatePublic:
        async with self.engine.connect() as conn:
            return to_public(await self._visible(conn, template_id, principal))

    async def page(
        self,
        principal: Principal,
        params: PageParams,
        *,
        kind: TemplateKind | None = None,
        search: str | None = None,
        scope: Scope | None = None,
    ) -> TemplatePage:
        """Newest first; ``search`` matches title or body (case-insensitive, as plain text)."""
        query = sa.select(T).where(visible_filter(principal))
        if scope == Scope.mine:
            query = query.where(T.c.owner == principal.username)
        elif scope == Scope.shared:
            query = query.where(T.c.owner != principal.username, T.c.sharing == Sharing.groups.value)
        elif scope == Scope.public:
            query = query.where(T.c.sharing == Sharing.public.value)
        if kind is not None:
            query = query.where(T.c.kind == kind.value)
        if search:
            pattern = _like(search[:MAX_SEARCH_CHARS])
            query = query.where(sa.or_(T.c.title.ilike(pattern, escape="\\"), T.c.body.ilike(pattern, escape="\\")))
        rows, next_cursor = await read_page(self.engine, query, T.c.id, params, descending=True)
        return TemplatePage(data=[to_public(r) for r in rows], next_cursor=next_cursor)

    async def revisions(self, template_id: str, principal: Principal, params: PageParams) -> RevisionPage:
        """Newest first; the owner's only."""
        async with self.engine.connect() as conn:
            _require_owner(principal, await self._visible(conn, template_id, principal), "read the revisions of")
        query = sa.select(R).where(R.c.template_id == template_id)
        rows, next_cursor = await read_page(self.engine, query, R.c.revision, params, descending=True)
        return RevisionPage(
            data=[RevisionPublic.model_validate(with_variables(r)) for r in rows], next_cursor=next_cursor
        )

    # --- filling in ------------------------------------------------------------------------------------------
    async def rendered(self, template_id: str, principal: Principal, variables: Mapping[str, str]) -> Rendered:
        async with self.engine.connect() as conn:
            row = await self._visible(conn, template_id, principal)
        text = fill(row["body"], variables)
        return Rendered(template_id=template_id, revision=row["revision"], kind=row["kind"], text=text)

    async def render(self, template_id: str, principal: Principal, variables: Mapping[str, str]) -> str:
        """The template's current text with its placeholders filled: 404 when the principal may not see it, 400
        naming every missing (and every unknown) variable. For the chat endpoint."""
        return (await self.rendered(template_id, principal, variables)).text

    # --- writes ----------------------------------------------------------------------------------------------
    async def create(self, data: TemplateCreate, principal: Principal) -> TemplatePublic:
        groups = _checked_groups(principal, data.groups)
        values = {
            "id": new_template_id(),
            "owner": principal.username,
            "kind": data.kind.value,
            "title": data.title,
            "body": data.body,
            "sharing": data.sharing.value,
            "groups": groups,
            "revision": 1,
        }
        async with self.engine.begin() as conn:
            row = (await conn.execute(T.insert().values(**values).returning(T))).one()._mapping
            await conn.execute(R.insert().values(**_revision_values(row, principal, restored_from=None)))
        return to_public(row)

    async def update(self, template_id: str, data: TemplateUpdate, principal: Principal) -> TemplatePublic:
        changes = data.model_dump(exclude_unset=True, mode="json")
        async with self.engine.begin() as conn:
            current = await self._visible(conn, template_id, principal, lock=True)
            _require_owner(principal, current, "change")
            if "groups" in changes:
                changes["groups"] = _checked_groups(principal, changes["groups"])
            merged = {**current, **changes}
            if merged["sharing"] != Sharing.groups.value and "groups" not in changes:
                merged["groups"] = []  # leaving group sharing drops the groups
            try:
                check_sharing(Sharing(merged["sharing"]), merged["groups"])
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
            row = await _new_revision(conn, current, merged, principal, restored_from=None)
        return to_public(row)

    async def restore(self, template_id: str, revision: int, principal: Principal) -> TemplatePublic:
        """A new revision with the title, kind and body of ``revision``; the sharing stays as it is now (a rollback
        never widens or narrows who sees a template behind its owner's back)."""
        async with self.engine.begin() as conn:
            current = await self._visible(conn, template_id, principal, lock=True)
            _require_owner(principal, current, "restore")
            old = (
                await conn.execute(sa.select(R).where(R.c.template_id == template_id, R.c.revision == revision))
            ).first()
            if old is None:
                raise NotFound(f"prompt template '{template_id}' has no revision {revision}")
            merged = {**current, **{key: old._mapping[key] for key in ("kind", "title", "body")}}
            row = await _new_revision(conn, current, merged, principal, restored_from=revision)
        return to_public(row)

    async def delete(self, template_id: str, principal: Principal) -> None:
        """The owner's, or an admin's (recorded in the audit log); its revisions go with it."""
        async with self.engine.begin() as conn:
            current = await self._visible(conn, template_id, principal, lock=True)
            owner = current["owner"] == principal.username
            if not (owner or principal.is_admin):
                raise Forbidden(f"only the owner of prompt template '{template_id}' or an admin can delete it")
            await conn.execute(T.delete().where(T.c.id == template_id))
            if not owner:
                await audit.record(
                    conn, principal, "prompt_template.delete", "prompt_template", template_id, before=dict(current)
                )

    # --- for assistant stacks --------------------------------------------------------------------------------
    async def pin(
        self, template_id: str, revision: int | None, kind: TemplateKind, principal: Principal, field: str
    ) -> int:
        """The revision an assistant keeps of a template ``principal`` may see: the one given, or the current one.
        400 naming ``field`` when the template is not visible, has no such revision or is of another kind."""
        async with self.engine.connect() as conn:
            try:
                current = await self._visible(conn, template_id, principal)
            except NotFound as exc:
                raise BadRequest(f"{field}: {exc.message}", param=field) from exc
            number = revision or current["revision"]
            old = (
                await conn.execute(sa.select(R.c.kind).where(R.c.template_id == template_id, R.c.revision == number))
            ).first()
        if old is None:
            raise BadRequest(f"{field}: prompt template '{template_id}' has no revision {number}", param=field)
        if old.kind != kind.value:
            raise BadRequest(
                f"{field}: prompt template '{template_id}' (revision {number}) is a {old.kind}, not a {kind.value}",
                param=field,
            )
        return number

    async def revision_texts(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """The bodies of these (template id, revision) pairs, whoever may see them; absent ones are left out."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        query = sa.select(R.c.template_id, R.c.revision, R.c.body).where(
            sa.tuple_(R.c.template_id, R.c.revision).in_(wanted)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {(r.template_id, r.revision): r.body for r in rows}


def _require_owner(principal: Principal, row: RowMapping, action: str) -> None:
    if row["owner"] != principal.username:
        raise Forbidden(f"only the owner of prompt template '{row['id']}' can {action} it")


def _checked_groups(principal: Principal, groups: list[str]) -> list[str]:
    """The groups, each once and sorted; 400 naming any the principal does not belong to (admins: any group)."""
    unique = sorted(set(groups))
    strangers = [group for group in unique if group not in principal.groups]
    if strangers and not principal.is_admin:
        names = ", ".join(f"'{group}'" for group in strangers)
        raise BadRequest(f"you can share only with groups you belong to; not a member of {names}", param="groups")
    return unique


def _revision_values(row: RowMapping, principal: Principal, restored_from: int | None) -> dict[str, Any]:
    return {
        "template_id": row["id"],
        "revision": row["revision"],
        **{key: row[key] for key in ("kind", "title", "body", "sharing", "groups")},
        "created_by": principal.username,
        "restored_from": restored_from,
    }


async def _new_revision(
    conn: AsyncConnection,
    current: RowMapping,
    merged: Mapping[str, Any],
    principal: Principal,
    restored_from: int | None,
) -> RowMapping:
    """Writes ``merged`` as the template's next revision (under the row lock ``current`` was read with)."""
    values = {key: merged[key] for key in ("kind", "title", "body", "sharing", "groups")}
    values["revision"] = current["revision"] + 1
    values["updated_at"] = sa.func.now()
    row = (await conn.execute(T.update().where(T.c.id == current["id"]).values(**values).returning(T))).one()._mapping
    await conn.execute(R.insert().values(**_revision_values(row, principal, restored_from)))
    return row
