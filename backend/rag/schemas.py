"""Schema families for repositories, collections, documents, ingestion jobs and search."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

from backend.paging import Page
from backend.text import SecretText, Text

RESOURCE_ID = r"^[a-z0-9][a-z0-9_-]{0,63}$"
GroupName = Annotated[Text, Field(min_length=1, max_length=256)]
Tag = Annotated[Text, Field(min_length=1, max_length=128)]


class StoreType(StrEnum):
    pgvector = "pgvector"
    opensearch = "opensearch"


class ChunkingStrategy(StrEnum):
    fixed = "fixed"
    tokens = "tokens"
    markdown = "markdown"
    none = "none"


class Chunking(BaseModel):
    """fixed: characters (size 100..10000, overlap <= size/2; default 512/51). tokens: tiktoken tokens (default
    256/25). markdown: split at headers, long sections cut as fixed. none: one chunk per document section.

    Without a strategy: tokens 256/25, the best measured on the PostgreSQL manual (docs/rag-quality.md)."""

    model_config = ConfigDict(extra="forbid")
    strategy: ChunkingStrategy = ChunkingStrategy.tokens
    size: int | None = Field(default=None, ge=1, le=10_000)
    overlap: int | None = Field(default=None, ge=0, le=5_000)

    @model_validator(mode="after")
    def _check(self) -> Chunking:
        from ingestion.chunkers import chunking_from_spec
        from ingestion.document import IngestionError

        try:
            chunking_from_spec(self.model_dump(mode="json", exclude_none=True))
        except IngestionError as exc:
            raise ValueError(str(exc)) from exc
        return self


class OpenSearchAuth(StrEnum):
    none = "none"
    basic = "basic"
    aws_sigv4 = "aws_sigv4"


class OpenSearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: AnyHttpUrl
    index_prefix: str = Field(default="lisa", pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$")
    auth: OpenSearchAuth = OpenSearchAuth.none
    username: Text | None = Field(default=None, max_length=256)
    password: SecretText | None = None
    region: Text | None = Field(default=None, max_length=64)
    service: Literal["es", "aoss"] = "es"

    @model_validator(mode="after")
    def _check(self) -> OpenSearchOptions:
        if self.auth == OpenSearchAuth.basic and (not self.username or not self.password):
            raise ValueError("basic auth needs username and password")
        if self.auth == OpenSearchAuth.aws_sigv4 and not self.region:
            raise ValueError("aws_sigv4 auth needs region")
        return self


class PgVectorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    database_url: SecretText | None = Field(
        default=None, description="An existing PostgreSQL with pgvector; empty: the platform's own database."
    )


class _RepositoryFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text | None = Field(default=None, min_length=1, max_length=256)
    embedding_model: Text | None = Field(default=None, max_length=128, description="Default for new collections.")
    allowed_groups: list[GroupName] | None = Field(default=None, max_length=100)


class RepositoryCreate(_RepositoryFields):
    id: str = Field(pattern=RESOURCE_ID, description="Lower-case letters, digits, '-' and '_'.")
    type: StoreType = StoreType.pgvector
    pgvector: PgVectorOptions | None = None
    opensearch: OpenSearchOptions | None = None

    @model_validator(mode="after")
    def _check(self) -> RepositoryCreate:
        if self.type == StoreType.opensearch and self.opensearch is None:
            raise ValueError("an opensearch repository needs 'opensearch' options (endpoint, ...)")
        if self.type == StoreType.pgvector and self.opensearch is not None:
            raise ValueError("'opensearch' options given for a pgvector repository")
        if self.type == StoreType.opensearch and self.pgvector is not None:
            raise ValueError("'pgvector' options given for an opensearch repository")
        return self


class RepositoryUpdate(_RepositoryFields):
    pass


class RepositoryPublic(BaseModel):
    id: str
    name: str
    type: StoreType
    options: dict[str, Any]  # non-secret store options
    has_secret: bool
    embedding_model: str
    allowed_groups: list[str]
    created_by: str
    created_at: datetime
    updated_at: datetime


class RepositoryPage(Page[RepositoryPublic]):
    pass


class _CollectionFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text | None = Field(default=None, min_length=1, max_length=256)
    description: Text | None = Field(default=None, max_length=4000)
    chunking: Chunking | None = None
    allow_chunking_override: bool | None = None
    allowed_groups: list[GroupName] | None = Field(default=None, max_length=100)


class CollectionCreate(_CollectionFields):
    id: str = Field(pattern=RESOURCE_ID)
    embedding_model: Text | None = Field(default=None, max_length=128, description="Default: the repository's.")


class CollectionUpdate(_CollectionFields):
    pass


class CollectionPublic(BaseModel):
    repository_id: str
    id: str
    name: str
    description: str
    embedding_model: str
    dimensions: int
    chunking: Chunking
    allow_chunking_override: bool
    allowed_groups: list[str]
    created_by: str
    created_at: datetime
    updated_at: datetime


class CollectionList(BaseModel):
    data: list[CollectionPublic]


class DocumentPublic(BaseModel):
    id: str
    repository_id: str
    collection_id: str
    name: str
    source: str
    sha256: str
    size: int
    content_type: str
    chunk_count: int
    chunking: dict[str, Any]
    tags: list[str]
    ingested_by: str
    job_id: str | None
    created_at: datetime
    updated_at: datetime


class DocumentPage(Page[DocumentPublic]):
    pass


class JobStatus(StrEnum):
    pending = "pending"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


FINAL_STATUSES = {JobStatus.completed, JobStatus.failed, JobStatus.cancelled}


class JobItemPublic(BaseModel):
    seq: int
    action: str
    source: str
    name: str
    status: str
    error: str | None
    document_id: str | None
    chunks: int | None


class JobPublic(BaseModel):
    id: str
    repository_id: str
    collection_id: str
    kind: str
    status: JobStatus
    documents_total: int
    documents_done: int
    documents_failed: int
    documents_skipped: int
    chunks_done: int
    error: str | None
    pipeline_id: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    items: list[JobItemPublic] | None = None


class JobPage(Page[JobPublic]):
    pass


class IngestRequest(BaseModel):
    """Bulk ingestion by reference: server-side paths (files or folders under an allowed root) or s3:// URIs."""

    model_config = ConfigDict(extra="forbid")
    sources: list[Annotated[Text, Field(min_length=1, max_length=2048)]] = Field(min_length=1, max_length=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    chunking: Chunking | None = None


class SearchHit(BaseModel):
    id: str
    text: str
    score: float  # the ranking score: blended (relative) for hybrid search, cosine similarity for vector search
    similarity: float | None = None  # cosine similarity to the query, when vector search found the chunk
    document_id: str
    source: str
    name: str
    collection_id: str
    part: int
    page: int | None
    tags: list[str]
    metadata: dict[str, Any]
    rerank_score: float | None = None


class SearchResult(BaseModel):
    query: str
    repository_id: str
    collections: list[str]
    results: list[SearchHit]
    timings_ms: dict[str, float]
