"""Repositories and their collections: the SQL, the access rules, and one open vector store per repository.

Who may do what: admins and RAG admins create, change and delete repositories and collections; anyone whose
groups pass a repository's (and then a collection's) ``allowed_groups`` may read, search and add documents.
Anything a principal may not see answers 404, as if it did not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.audit import log as audit
from backend.auth.principal import Principal, access_filter, can_access
from backend.db import tables
from backend.errors import BadRequest, Conflict, Forbidden, NotFound
from backend.net.egress import EgressGuard
from backend.paging import PageParams, read_page
from backend.rag.embedder import Embedder
from backend.rag.schemas import (
    Chunking,
    ChunkingStrategy,
    CollectionCreate,
    CollectionPublic,
    CollectionUpdate,
    RepositoryCreate,
    RepositoryPage,
    RepositoryPublic,
    RepositoryUpdate,
    StoreType,
)
from backend.rag.vectorstores import CollectionRef, StoreConfig, VectorStore, open_store
from backend.rag.vectorstores.pgvector import PgVectorStore
from backend.registry.secrets import SecretBox

R = tables.rag_repositories
C = tables.rag_collections
DEFAULT_COLLECTION = "default"
DEFAULT_CHUNKING = Chunking(strategy=ChunkingStrategy.tokens, size=256, overlap=25)  # see docs/rag-quality.md


def require_rag_admin(principal: Principal) -> None:
    if not (principal.is_admin or principal.is_rag_admin):
        raise Forbidden("managing repositories, collections and pipelines needs the admin or RAG admin group")


def repository_public(m: Any, *, manager: bool = True) -> RepositoryPublic:
    """The store's options (an OpenSearch endpoint, a user name) are shown to admins and RAG admins only."""
    has_secret = m["secret_encrypted"] is not None
    return RepositoryPublic.model_validate({**m, "options": m["options"] if manager else {}, "has_secret": has_secret})


def collection_public(m: Any) -> CollectionPublic:
    return CollectionPublic.model_validate(m)


def collection_ref(collection: CollectionPublic) -> CollectionRef:
    return CollectionRef(collection.repository_id, collection.id, collection.dimensions)


class RepositoryService:
    def __init__(
        self,
        engine: AsyncEngine,
        database_url: str,
        box: SecretBox,
        embedder: Embedder,
        *,
        egress: EgressGuard | None = None,
    ) -> None:
        self.engine = engine
        self.database_url = database_url
        self.box = box
        self.embedder = embedder
        self.egress = egress or EgressGuard.default()
        self._stores: dict[str, VectorStore] = {}

    # --- repositories ----------------------------------------------------------------------------------------
    async def create(self, data: RepositoryCreate, actor: Principal, default_embedding_model: str) -> RepositoryPublic:
        require_rag_admin(actor)
        await self._check_egress(data)
        model = data.embedding_model or default_embedding_model
        dimensions = await self.embedder.dimensions(model)  # also proves the model exists and answers
        options: dict[str, Any] = {}
        secret: str | None = None
        if data.type == StoreType.opensearch and data.opensearch is not None:
            options = data.opensearch.model_dump(mode="json", exclude={"password"})
            if data.opensearch.password is not None:
                secret = data.opensearch.password.get_secret_value()
        elif data.pgvector is not None and data.pgvector.database_url is not None:
            secret = data.pgvector.database_url.get_secret_value()
            options = {"external_database": True}
        row_values = {
            "id": data.id,
            "name": data.name or data.id,
            "type": data.type.value,
            "options": options,
            "secret_encrypted": self.box.seal(secret) if secret else None,
            "embedding_model": model,
            "allowed_groups": data.allowed_groups or [],
            "created_by": actor.username,
        }
        store = self._open(self._store_config(row_values))
        default = {
            "repository_id": data.id,
            "id": DEFAULT_COLLECTION,
            "name": "Default",
            "embedding_model": model,
            "dimensions": dimensions,
            "chunking": DEFAULT_CHUNKING.model_dump(mode="json"),
            "created_by": actor.username,
        }
        try:
            async with self.engine.begin() as conn:
                row = (await conn.execute(R.insert().values(**row_values).returning(R))).one()
                await conn.execute(C.insert().values(**default))
                await audit.record(conn, actor, "repository.create", "repository", data.id, after=_auditable(row))
                # The store must accept the default collection before the repository exists for anyone.
                await store.ensure_collection(CollectionRef(data.id, DEFAULT_COLLECTION, dimensions))
        except IntegrityError as exc:
            await store.close()
            raise Conflict(f"a repository with id '{data.id}' already exists") from exc
        except Exception as exc:
            await store.close()
            if isinstance(exc, (BadRequest, Conflict)):
                raise
            raise BadRequest(f"the vector store refused the repository: {exc}") from exc
        self._stores[data.id] = store
        return repository_public(row._mapping)

    async def _check_egress(self, data: RepositoryCreate) -> None:
        """Where the store lives must pass the egress guard (400 naming the host and why) before anything is written;
        the stores check again when they connect."""
        if data.type == StoreType.opensearch and data.opensearch is not None:
            await self.egress.check_url(str(data.opensearch.endpoint), "opensearch endpoint")
        elif data.pgvector is not None and data.pgvector.database_url is not None:
            await self.egress.check_database_url(data.pgvector.database_url.get_secret_value(), "pgvector database_url")

    async def _repo_row(self, repository_id: str) -> Any:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(R).where(R.c.id == repository_id))).first()
        return row._mapping if row else None

    async def get(self, repository_id: str, principal: Principal) -> RepositoryPublic:
        m = await self._repo_row(repository_id)
        if m is None or not can_access(principal, m["allowed_groups"]):
            raise NotFound(f"repository '{repository_id}' not found")
        return repository_public(m, manager=_manages(principal))

    async def page(self, principal: Principal, params: PageParams) -> RepositoryPage:
        query = sa.select(R).where(access_filter(principal, R.c.allowed_groups))
        rows, next_cursor = await read_page(self.engine, query, R.c.id, params)
        manager = _manages(principal)
        return RepositoryPage(data=[repository_public(m, manager=manager) for m in rows], next_cursor=next_cursor)

    async def update(self, repository_id: str, data: RepositoryUpdate, actor: Principal) -> RepositoryPublic:
        require_rag_admin(actor)
        await self.get(repository_id, actor)
        changes = data.model_dump(exclude_unset=True)
        if changes.get("embedding_model"):
            await self.embedder.route(changes["embedding_model"])
        for key in ("name", "embedding_model"):
            if key in changes and changes[key] is None:
                raise BadRequest(f"'{key}' cannot be null")
        if "allowed_groups" in changes and changes["allowed_groups"] is None:
            changes["allowed_groups"] = []
        changes["updated_at"] = datetime.now(UTC)
        async with self.engine.begin() as conn:
            before = (await conn.execute(sa.select(R).where(R.c.id == repository_id).with_for_update())).one()
            row = (await conn.execute(R.update().where(R.c.id == repository_id).values(**changes).returning(R))).one()
            await audit.record(
                conn, actor, "repository.update", "repository", repository_id, _auditable(before), _auditable(row)
            )
        return repository_public(row._mapping)

    async def delete(self, repository_id: str, actor: Principal) -> None:
        """Drops every collection's chunks, then the documents, jobs and pipelines, then the repository."""
        require_rag_admin(actor)
        await self.get(repository_id, actor)
        store = await self.store(repository_id)
        for collection in await self.collections(repository_id, actor):
            await store.drop_collection(collection_ref(collection))
        async with self.engine.begin() as conn:
            gone = (await conn.execute(R.delete().where(R.c.id == repository_id).returning(R))).one()
            await conn.execute(C.delete().where(C.c.repository_id == repository_id))
            await conn.execute(
                tables.rag_documents.delete().where(tables.rag_documents.c.repository_id == repository_id)
            )
            await _delete_jobs(conn, tables.rag_jobs.c.repository_id == repository_id)
            pipelines = tables.rag_pipelines
            ids = sa.select(pipelines.c.id).where(pipelines.c.repository_id == repository_id)
            await conn.execute(
                tables.rag_pipeline_objects.delete().where(tables.rag_pipeline_objects.c.pipeline_id.in_(ids))
            )
            await conn.execute(pipelines.delete().where(pipelines.c.repository_id == repository_id))
            await _delete_orphan_blobs(conn)
            await audit.record(conn, actor, "repository.delete", "repository", repository_id, before=_auditable(gone))
        cached = self._stores.pop(repository_id, None)
        if cached is not None:
            await cached.close()

    # --- collections -----------------------------------------------------------------------------------------
    async def collections(self, repository_id: str, principal: Principal) -> list[CollectionPublic]:
        await self.get(repository_id, principal)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(C).where(C.c.repository_id == repository_id).order_by(C.c.id))).all()
        return [collection_public(r._mapping) for r in rows if can_access(principal, r._mapping["allowed_groups"])]

    async def collection(self, repository_id: str, collection_id: str, principal: Principal) -> CollectionPublic:
        await self.get(repository_id, principal)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(C).where(C.c.repository_id == repository_id, C.c.id == collection_id))
            ).first()
        if row is None or not can_access(principal, row._mapping["allowed_groups"]):
            raise NotFound(f"collection '{collection_id}' not found in repository '{repository_id}'")
        return collection_public(row._mapping)

    async def create_collection(self, repository_id: str, data: CollectionCreate, actor: Principal) -> CollectionPublic:
        require_rag_admin(actor)
        repo = await self.get(repository_id, actor)
        model = data.embedding_model or repo.embedding_model
        dimensions = await self.embedder.dimensions(model)
        values = {
            "repository_id": repository_id,
            "id": data.id,
            "name": data.name or data.id,
            "description": data.description or "",
            "embedding_model": model,
            "dimensions": dimensions,
            "chunking": (data.chunking or DEFAULT_CHUNKING).model_dump(mode="json"),
            "allow_chunking_override": True if data.allow_chunking_override is None else data.allow_chunking_override,
            "allowed_groups": data.allowed_groups or [],
            "created_by": actor.username,
        }
        store = await self.store(repository_id)
        try:
            async with self.engine.begin() as conn:
                row = (await conn.execute(C.insert().values(**values).returning(C))).one()
                await audit.record(
                    conn, actor, "collection.create", "collection", f"{repository_id}/{data.id}", after=_auditable(row)
                )
                await store.ensure_collection(CollectionRef(repository_id, data.id, dimensions))
        except IntegrityError as exc:
            raise Conflict(f"collection '{data.id}' already exists in repository '{repository_id}'") from exc
        return collection_public(row._mapping)

    async def update_collection(
        self, repository_id: str, collection_id: str, data: CollectionUpdate, actor: Principal
    ) -> CollectionPublic:
        require_rag_admin(actor)
        await self.collection(repository_id, collection_id, actor)
        changes = data.model_dump(mode="json", exclude_unset=True)
        for key in ("name", "chunking", "allow_chunking_override"):
            if key in changes and changes[key] is None:
                raise BadRequest(f"'{key}' cannot be null")
        if "allowed_groups" in changes and changes["allowed_groups"] is None:
            changes["allowed_groups"] = []
        if "description" in changes and changes["description"] is None:
            changes["description"] = ""
        changes["updated_at"] = datetime.now(UTC)
        where = (C.c.repository_id == repository_id) & (C.c.id == collection_id)
        async with self.engine.begin() as conn:
            before = (await conn.execute(sa.select(C).where(where).with_for_update())).one()
            row = (await conn.execute(C.update().where(where).values(**changes).returning(C))).one()
            await audit.record(
                conn,
                actor,
                "collection.update",
                "collection",
                f"{repository_id}/{collection_id}",
                _auditable(before),
                _auditable(row),
            )
        return collection_public(row._mapping)

    async def delete_collection(self, repository_id: str, collection_id: str, actor: Principal) -> None:
        require_rag_admin(actor)
        collection = await self.collection(repository_id, collection_id, actor)
        store = await self.store(repository_id)
        await store.drop_collection(collection_ref(collection))
        D = tables.rag_documents
        where = (C.c.repository_id == repository_id) & (C.c.id == collection_id)
        async with self.engine.begin() as conn:
            gone = (await conn.execute(C.delete().where(where).returning(C))).one()
            await conn.execute(D.delete().where(D.c.repository_id == repository_id, D.c.collection_id == collection_id))
            J = tables.rag_jobs
            await _delete_jobs(conn, (J.c.repository_id == repository_id) & (J.c.collection_id == collection_id))
            await _delete_orphan_blobs(conn)
            await audit.record(
                conn, actor, "collection.delete", "collection", f"{repository_id}/{collection_id}", _auditable(gone)
            )

    # --- stores ----------------------------------------------------------------------------------------------
    async def store(self, repository_id: str) -> VectorStore:
        cached = self._stores.get(repository_id)
        if cached is not None:
            return cached
        m = await self._repo_row(repository_id)
        if m is None:
            raise NotFound(f"repository '{repository_id}' not found")
        store = self._open(self._store_config(dict(m)))
        self._stores[repository_id] = store
        return store

    def _store_config(self, m: dict[str, Any]) -> StoreConfig:
        what = f"the secret of repository {m['id']!r}"
        secret = self.box.open(m["secret_encrypted"], what) if m.get("secret_encrypted") else None
        if m["type"] == StoreType.pgvector.value:
            return StoreConfig("pgvector", {"database_url": secret or self.database_url})
        return StoreConfig(m["type"], dict(m["options"]), secret)

    def _open(self, config: StoreConfig) -> VectorStore:
        """The platform database's store reuses the platform's engine (no second pool)."""
        if config.type == "pgvector" and config.options.get("database_url") == self.database_url:
            return PgVectorStore(self.database_url, self.engine)
        return open_store(config, self.egress)

    async def close(self) -> None:
        for store in self._stores.values():
            await store.close()
        self._stores.clear()


def _manages(principal: Principal) -> bool:
    return principal.is_admin or principal.is_rag_admin


def _auditable(row: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(row._mapping).items() if k != "secret_encrypted"}


async def _delete_jobs(conn: Any, where: Any) -> None:
    J = tables.rag_jobs
    ids = sa.select(J.c.id).where(where)
    await conn.execute(tables.rag_job_items.delete().where(tables.rag_job_items.c.job_id.in_(ids)))
    await conn.execute(J.delete().where(where))


async def _delete_orphan_blobs(conn: Any) -> None:
    """Originals no document and no unfinished job item refers to."""
    B, D, I = tables.rag_blobs, tables.rag_documents, tables.rag_job_items  # noqa: E741
    await conn.execute(
        B.delete().where(
            ~sa.exists().where(D.c.sha256 == B.c.sha256),
            ~sa.exists().where(I.c.blob_sha256 == B.c.sha256, I.c.status == "pending"),
        )
    )
