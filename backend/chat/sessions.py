"""Chat sessions and projects of one owner: create, list and search, read with the active branch, change, delete,
and the read-only share link.

Everything is keyed on the caller's username: another user's session or project is "not found" (404), on every
route. A share link is readable by signed-in users who may see every model and RAG repository (and collection)
the session used; for anyone else it does not exist (404) either.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import RowMapping

from backend.auth.principal import Principal, can_access
from backend.chat.personas import Personas
from backend.chat.schemas import (
    ChatArguments,
    ChatRagSpec,
    MessagePublic,
    ProjectPage,
    ProjectPublic,
    SessionCreate,
    SessionPage,
    SessionPublic,
    SessionSummary,
    SessionUpdate,
    SharedSession,
    ShareLink,
)
from backend.chat.store import ChatStore, P
from backend.chat.tree import MessageTree
from backend.errors import BadRequest, NotFound
from backend.paging import PageParams, read_page
from backend.rag.repositories import RepositoryService
from backend.registry.route_table import RouteTable

SETTINGS = (
    "system_prompt",
    "arguments",
    "history_buffer",
    "rag",
    "persona_template_id",
    "variables",
    "directive_template_ids",
)
EXTRA_SHOWN = ("persona_template_id", "variables", "directive_template_ids", "assistant_id", "mcp_tools")
SHARE_PREFIX = "shr_"


def hash_share_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def summary(row: Mapping[Any, Any]) -> dict[str, Any]:
    prompt, completion = int(row["prompt_tokens"]), int(row["completion_tokens"])
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return {**row, "shared": row["share_token_hash"] is not None, "usage": usage}


def messages_public(tree: MessageTree, branch: Sequence[Mapping[Any, Any]]) -> list[MessagePublic]:
    out = []
    for row in branch:
        siblings = tree.siblings(row["id"])
        out.append(
            MessagePublic.model_validate({**row, "siblings": siblings, "sibling_index": siblings.index(row["id"])})
        )
    return out


def settings_values(data: BaseModel, current: Mapping[Any, Any] | None = None) -> dict[str, Any]:
    """The ``settings`` JSON of a session after ``data`` (only the fields it sets change; null clears one)."""
    settings = dict(current or {})
    sent = data.model_fields_set
    for key in SETTINGS:
        if key in sent:
            value = getattr(data, key)
            if value is None:
                settings.pop(key, None)
            else:
                settings[key] = (
                    value.model_dump(mode="json", exclude_none=True) if key in ("arguments", "rag") else value
                )
    return settings


class ChatSessions:
    def __init__(
        self, store: ChatStore, routes: RouteTable, repositories: RepositoryService, personas: Personas
    ) -> None:
        self.store = store
        self.routes = routes
        self.repositories = repositories
        self.personas = personas

    # --- sessions --------------------------------------------------------------------------------------------
    async def create(self, owner: Principal, data: SessionCreate) -> SessionPublic:
        model, base = await self.personas.from_assistant(owner, data)  # {} without an assistant
        settings = settings_values(data, base)
        await self.personas.check(owner, settings)
        values = {
            "title": data.title,
            "project_id": data.project_id,
            "model": data.model or model,
            "settings": settings,
        }
        row = await self.store.create_session(owner.username, values)
        return self._public(row, [])

    async def page(
        self, owner: Principal, params: PageParams, search: str | None, project_id: str | None
    ) -> SessionPage:
        rows, next_cursor = await self.store.page(owner.username, params, search, project_id)
        return SessionPage(data=[SessionSummary.model_validate(summary(r)) for r in rows], next_cursor=next_cursor)

    async def get(self, owner: Principal, session_id: str) -> SessionPublic:
        row = await self.store.session(owner.username, session_id)
        return self._public(row, await self.store.messages(session_id))

    def _public(self, row: Mapping[Any, Any], messages: Sequence[RowMapping]) -> SessionPublic:
        tree = MessageTree(messages)
        branch = tree.branch(row["active_leaf_id"])
        settings = row["settings"]
        return SessionPublic.model_validate(
            {
                **summary(row),
                "system_prompt": settings.get("system_prompt"),
                "arguments": ChatArguments.model_validate(settings["arguments"]) if "arguments" in settings else None,
                "history_buffer": settings.get("history_buffer"),
                "rag": ChatRagSpec.model_validate(settings["rag"]) if "rag" in settings else None,
                **{k: settings.get(k) for k in EXTRA_SHOWN},
                "active_leaf_id": branch[-1]["id"] if branch else None,
                "messages": messages_public(tree, branch),
            }
        )

    async def update(self, owner: Principal, session_id: str, data: SessionUpdate) -> SessionPublic:
        current = await self.store.session(owner.username, session_id)
        sent = data.model_fields_set
        changes: dict[str, Any] = {}
        if "title" in sent:
            if data.title is None:
                raise BadRequest("'title' cannot be null")
            changes["title"] = data.title
        model, settings = current["model"], current["settings"]
        if "assistant_id" in sent:
            model, settings = await self.personas.switch_assistant(owner, model, settings, data.assistant_id)
            changes["model"], changes["settings"] = model, settings
        for key in ("project_id", "model"):
            if key in sent:
                changes[key] = getattr(data, key)
        if sent & {*SETTINGS, "assistant_id"}:
            settings = settings_values(data, settings)
            await self.personas.check(owner, settings)
            changes["settings"] = settings
        messages = await self.store.messages(session_id)
        if "active_leaf_id" in sent:
            tree = MessageTree(messages)
            if data.active_leaf_id is None or data.active_leaf_id not in tree.by_id:
                raise BadRequest("'active_leaf_id' must name a message of this session")
            changes["active_leaf_id"] = tree.newest_leaf_under(data.active_leaf_id)
        row = await self.store.update_session(owner.username, session_id, changes) if changes else current
        return self._public(row, messages)

    async def delete(self, owner: Principal, session_id: str) -> None:
        await self.store.delete_session(owner.username, session_id)

    async def delete_all(self, owner: Principal) -> int:
        return await self.store.delete_all(owner.username)

    # --- sharing ---------------------------------------------------------------------------------------------
    async def share(self, owner: Principal, session_id: str) -> ShareLink:
        """A new read-only link (the previous one, if any, stops working); only its hash is stored."""
        token = SHARE_PREFIX + secrets.token_urlsafe(32)
        row = await self.store.set_share(owner.username, session_id, hash_share_token(token))
        return ShareLink(token=token, path=f"/api/shared/{token}", shared_at=row["shared_at"])

    async def unshare(self, owner: Principal, session_id: str) -> None:
        await self.store.set_share(owner.username, session_id, None)

    async def shared(self, reader: Principal, token: str) -> SharedSession:
        missing = NotFound("shared session not found")
        if not token.startswith(SHARE_PREFIX) or len(token) > 100:
            raise missing
        row = await self.store.session_by_share(hash_share_token(token))
        if row is None:
            raise missing
        messages = await self.store.messages(row["id"])
        if not await self.may_see_everything_used(reader, row, messages):
            raise missing
        tree = MessageTree(messages)
        return SharedSession.model_validate(
            {**row, "messages": messages_public(tree, tree.branch(row["active_leaf_id"]))}
        )

    async def may_see_everything_used(
        self, reader: Principal, row: Mapping[Any, Any], messages: Sequence[Mapping[Any, Any]]
    ) -> bool:
        """Every model and RAG repository (and collection of a cited source) the session names or used must be
        visible to ``reader``: the registry's route table and the repositories' own access rule decide. A model or
        repository that no longer exists is visible to admins only."""
        models, repositories, collections = used_by(row, messages)
        table = await self.routes.snapshot()
        for model_id in models:
            route = table.get(model_id)
            if not (can_access(reader, route.allowed_groups) if route is not None else reader.is_admin):
                return False
        for repository_id in repositories:
            try:
                await self.repositories.get(repository_id, reader)
            except NotFound:
                if not reader.is_admin:
                    return False
        for repository_id, collection_id in collections:
            try:
                await self.repositories.collection(repository_id, collection_id, reader)
            except NotFound:
                if not reader.is_admin:
                    return False
        return True

    # --- projects --------------------------------------------------------------------------------------------
    async def create_project(self, owner: Principal, name: str) -> ProjectPublic:
        return ProjectPublic.model_validate(await self.store.create_project(owner.username, name))

    async def projects(self, owner: Principal, params: PageParams) -> ProjectPage:
        query = self.store.projects_query(owner.username)
        rows, next_cursor = await read_page(self.store.engine, query, P.c.id, params)
        return ProjectPage(data=[ProjectPublic.model_validate(r) for r in rows], next_cursor=next_cursor)

    async def project(self, owner: Principal, project_id: str) -> ProjectPublic:
        return ProjectPublic.model_validate(await self.store.project(owner.username, project_id))

    async def rename_project(self, owner: Principal, project_id: str, name: str) -> ProjectPublic:
        return ProjectPublic.model_validate(await self.store.rename_project(owner.username, project_id, name))

    async def delete_project(self, owner: Principal, project_id: str, *, delete_sessions: bool) -> None:
        await self.store.delete_project(owner.username, project_id, with_sessions=delete_sessions)


def used_by(
    row: Mapping[Any, Any], messages: Sequence[Mapping[Any, Any]]
) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """The models, repositories and (repository, collection) pairs a session names in its settings or used."""
    models: set[str] = {row["model"]} if row["model"] else set()
    repositories: set[str] = set()
    collections: set[tuple[str, str]] = set()

    def note_rag(rag: Any) -> None:
        if isinstance(rag, dict):
            repositories.update(str(r) for r in rag.get("repositories") or [])

    note_rag(row["settings"].get("rag"))
    for message in messages:
        meta = message["metadata"] or {}
        if meta.get("model"):
            models.add(str(meta["model"]))
        note_rag(meta.get("rag"))
        for source in meta.get("sources") or []:
            if isinstance(source, dict) and source.get("repository_id"):
                repositories.add(str(source["repository_id"]))
                if source.get("collection_id"):
                    collections.add((str(source["repository_id"]), str(source["collection_id"])))
    return models, repositories, collections
