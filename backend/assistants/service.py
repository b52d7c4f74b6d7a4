"""Assistant stacks: the SQL, the checks of what an assistant refers to, and ``resolve`` for chat sessions.

Admins create, change and delete assistants (every write is in the audit log). Everyone may list and read the
assistants their groups allow (``allowed_groups``, empty: everyone); any other answers 404, as if it did not exist.

What an assistant refers to is checked when it is saved, as the admin saving it: the model must be a registered
textgen model, each RAG collection must exist, a persona or directive template must be one the admin may see, of
the right kind. A template is kept at the revision it had then (or the one named): its owner's later edits do not
change the assistant; an admin re-saves it to take a newer revision. MCP tools are checked for their form only.
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.assistants.schemas import (
    AssistantCreate,
    AssistantPage,
    AssistantPublic,
    AssistantUpdate,
    CollectionSpec,
    PersonaSpec,
    ResolvedAssistant,
    ResolvedPrompt,
    TemplateRef,
)
from backend.audit import log as audit
from backend.auth.principal import Principal, access_filter, can_access
from backend.db import tables
from backend.errors import BadRequest, Conflict, Forbidden, NotFound
from backend.paging import PageParams, read_page
from backend.prompts.placeholders import variables_of
from backend.prompts.schemas import TemplateKind
from backend.prompts.service import PromptTemplateService
from backend.rag.schemas import CollectionPublic
from backend.registry.schemas import ModelPublic, ModelType

A = tables.assistants


class ModelLookup(Protocol):
    """The model registry, as far as assistants need it (``ModelRegistry``)."""

    async def get(self, model_id: str, principal: Principal) -> ModelPublic: ...


class CollectionLookup(Protocol):
    """RAG collections, as far as assistants need them (``RepositoryService``)."""

    async def collection(self, repository_id: str, collection_id: str, principal: Principal) -> CollectionPublic: ...


def to_public(row: RowMapping) -> AssistantPublic:
    return AssistantPublic.model_validate(dict(row))


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("managing assistants needs the admin group")


class AssistantService:
    def __init__(
        self,
        engine: AsyncEngine,
        templates: PromptTemplateService,
        models: ModelLookup,
        collections: CollectionLookup,
    ) -> None:
        self.engine = engine
        self.templates = templates
        self.models = models
        self.collections = collections

    # --- reads -----------------------------------------------------------------------------------------------
    async def _visible(self, assistant_id: str, principal: Principal) -> RowMapping:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(A).where(A.c.id == assistant_id))).first()
        if row is None or not can_access(principal, row._mapping["allowed_groups"]):
            raise NotFound(f"assistant '{assistant_id}' not found")
        return row._mapping

    async def get(self, assistant_id: str, principal: Principal) -> AssistantPublic:
        return to_public(await self._visible(assistant_id, principal))

    async def page(self, principal: Principal, params: PageParams) -> AssistantPage:
        """By name; only the assistants the principal's groups allow."""
        query = sa.select(A).where(access_filter(principal, A.c.allowed_groups))
        rows, next_cursor = await read_page(self.engine, query, A.c.name, params)
        return AssistantPage(data=[to_public(r) for r in rows], next_cursor=next_cursor)

    async def resolve(self, assistant_id: str, principal: Principal) -> ResolvedAssistant:
        """Everything a chat session takes from the assistant: 404 when the principal's groups do not allow it; 409
        when a template it keeps has since been deleted (an admin must update the assistant)."""
        row = await self._visible(assistant_id, principal)
        persona: dict[str, Any] | None = row["persona"]
        refs = [(d["template_id"], d["revision"]) for d in row["directives"]]
        if persona is not None and persona.get("template_id"):
            refs.append((persona["template_id"], persona["revision"]))
        texts = await self.templates.revision_texts(refs)

        def prompt(template_id: str, revision: int) -> ResolvedPrompt:
            text = texts.get((template_id, revision))
            if text is None:
                raise Conflict(
                    f"assistant '{row['name']}' uses revision {revision} of prompt template '{template_id}', which "
                    "has been deleted: an admin must update the assistant"
                )
            return ResolvedPrompt(text, tuple(variables_of(text)), template_id, revision)

        resolved_persona = None
        if persona is not None:
            if persona.get("template_id"):
                resolved_persona = prompt(persona["template_id"], persona["revision"])
            else:
                resolved_persona = ResolvedPrompt(persona["text"], tuple(variables_of(persona["text"])))
        return ResolvedAssistant(
            id=row["id"],
            name=row["name"],
            model_id=row["model_id"],
            model_args={k: v for k, v in row["model_args"].items() if v is not None},
            persona=resolved_persona,
            directives=tuple(prompt(d["template_id"], d["revision"]) for d in row["directives"]),
            collections=tuple(CollectionSpec.model_validate(c) for c in row["collections"]),
            mcp_tools=tuple(row["mcp_tools"]),
        )

    # --- writes ----------------------------------------------------------------------------------------------
    async def create(self, data: AssistantCreate, actor: Principal) -> AssistantPublic:
        _require_admin(actor)
        values = await self._checked(data, set(AssistantCreate.model_fields), actor)
        values |= {"id": "asst-" + secrets.token_hex(8), "created_by": actor.username, "updated_by": actor.username}
        try:
            async with self.engine.begin() as conn:
                row = (await conn.execute(A.insert().values(**values).returning(A))).one()._mapping
                await audit.record(conn, actor, "assistant.create", "assistant", row["id"], after=dict(row))
        except IntegrityError as exc:
            raise Conflict(f"an assistant named '{data.name}' already exists") from exc
        return to_public(row)

    async def update(self, assistant_id: str, data: AssistantUpdate, actor: Principal) -> AssistantPublic:
        _require_admin(actor)
        await self._visible(assistant_id, actor)
        values = await self._checked(data, data.model_fields_set, actor)
        values |= {"updated_by": actor.username, "updated_at": sa.func.now()}
        try:
            async with self.engine.begin() as conn:
                before = (await conn.execute(sa.select(A).where(A.c.id == assistant_id).with_for_update())).first()
                if before is None:
                    raise NotFound(f"assistant '{assistant_id}' not found")
                row = (
                    (await conn.execute(A.update().where(A.c.id == assistant_id).values(**values).returning(A)))
                    .one()
                    ._mapping
                )
                await audit.record(
                    conn, actor, "assistant.update", "assistant", assistant_id, dict(before._mapping), dict(row)
                )
        except IntegrityError as exc:
            raise Conflict(f"an assistant named '{data.name}' already exists") from exc
        return to_public(row)

    async def delete(self, assistant_id: str, actor: Principal) -> None:
        _require_admin(actor)
        async with self.engine.begin() as conn:
            gone = (await conn.execute(A.delete().where(A.c.id == assistant_id).returning(A))).first()
            if gone is None:
                raise NotFound(f"assistant '{assistant_id}' not found")
            await audit.record(conn, actor, "assistant.delete", "assistant", assistant_id, before=dict(gone._mapping))

    # --- checks ----------------------------------------------------------------------------------------------
    async def _checked(
        self, data: AssistantCreate | AssistantUpdate, fields: set[str], actor: Principal
    ) -> dict[str, Any]:
        """The column values of the fields sent, each reference checked (400 naming the field)."""
        values: dict[str, Any] = {}
        for name in ("name", "description", "mcp_tools"):
            if name in fields:
                values[name] = getattr(data, name)
        if "allowed_groups" in fields:
            values["allowed_groups"] = sorted(set(data.allowed_groups or []))
        if "model_args" in fields and data.model_args is not None:
            values["model_args"] = data.model_args.model_dump(mode="json", exclude_none=True)
        if "model_id" in fields and data.model_id is not None:
            await self._check_model(data.model_id, actor)
            values["model_id"] = data.model_id
        if "persona" in fields:
            values["persona"] = await self._persona(data.persona, actor)
        if "directives" in fields and data.directives is not None:
            values["directives"] = [
                await self._pin(ref, TemplateKind.directive, actor, f"directives[{i}]")
                for i, ref in enumerate(data.directives)
            ]
        if "collections" in fields and data.collections is not None:
            for i, spec in enumerate(data.collections):
                await self._check_collection(spec, actor, f"collections[{i}]")
            values["collections"] = [spec.model_dump() for spec in data.collections]
        return values

    async def _check_model(self, model_id: str, actor: Principal) -> None:
        try:
            model = await self.models.get(model_id, actor)
        except NotFound as exc:
            raise BadRequest(f"model_id: no model '{model_id}' is registered", param="model_id") from exc
        if model.type != ModelType.textgen:
            raise BadRequest(
                f"model_id: '{model_id}' is a {model.type.value} model; an assistant needs a textgen model",
                param="model_id",
            )

    async def _check_collection(self, spec: CollectionSpec, actor: Principal, field: str) -> None:
        try:
            await self.collections.collection(spec.repository_id, spec.collection_id, actor)
        except NotFound as exc:
            raise BadRequest(f"{field}: {exc.message}", param=field) from exc

    async def _pin(self, ref: TemplateRef, kind: TemplateKind, actor: Principal, field: str) -> dict[str, Any]:
        revision = await self.templates.pin(ref.template_id, ref.revision, kind, actor, field)
        return {"template_id": ref.template_id, "revision": revision}

    async def _persona(self, persona: PersonaSpec | None, actor: Principal) -> dict[str, Any] | None:
        if persona is None:
            return None
        if persona.text is not None:
            return {"text": persona.text}
        assert persona.template_id is not None  # PersonaSpec: exactly one of the two
        ref = TemplateRef(template_id=persona.template_id, revision=persona.revision)
        return await self._pin(ref, TemplateKind.persona, actor, "persona")
