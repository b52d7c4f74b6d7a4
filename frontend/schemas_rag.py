"""Typed results of the backend's RAG API (repositories, collections, documents, jobs, pipelines) as the app reads
them. Unknown fields are ignored; the fields the tabs rely on are required."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from frontend.schemas import Result

RUNNING = {"pending", "in_progress"}


class Chunking(Result):
    strategy: str = "tokens"
    size: int | None = None
    overlap: int | None = None

    def describe(self) -> str:
        if self.strategy == "none":
            return "none"
        return f"{self.strategy} {self.size or 'default'}/{self.overlap if self.overlap is not None else 'default'}"


class Repository(Result):
    id: str
    name: str
    type: str = "pgvector"
    embedding_model: str
    allowed_groups: list[str] = Field(default_factory=list)
    created_by: str = ""


class RepositoryPage(Result):
    data: list[Repository]
    next_cursor: str | None = None


class Collection(Result):
    repository_id: str
    id: str
    name: str
    description: str = ""
    embedding_model: str
    dimensions: int = 0
    chunking: Chunking = Field(default_factory=Chunking)
    allow_chunking_override: bool = False
    allowed_groups: list[str] = Field(default_factory=list)


class CollectionList(Result):
    data: list[Collection]


class Document(Result):
    id: str
    repository_id: str
    collection_id: str
    name: str
    source: str
    size: int
    content_type: str
    chunk_count: int
    tags: list[str] = Field(default_factory=list)
    ingested_by: str = ""
    created_at: datetime


class DocumentPage(Result):
    data: list[Document]
    next_cursor: str | None = None


class JobItem(Result):
    name: str
    status: str
    error: str | None = None


class Job(Result):
    id: str
    repository_id: str
    collection_id: str
    kind: str
    status: str
    documents_total: int
    documents_done: int
    documents_failed: int = 0
    documents_skipped: int = 0
    chunks_done: int = 0
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    items: list[JobItem] | None = None

    @property
    def running(self) -> bool:
        return self.status in RUNNING


class JobPage(Result):
    data: list[Job]
    next_cursor: str | None = None


class Pipeline(Result):
    id: str
    repository_id: str
    collection_id: str
    name: str
    source: dict[str, Any]
    trigger: dict[str, Any]
    tags: list[str] = Field(default_factory=list)
    auto_remove: bool = True
    enabled: bool = True
    last_run_at: datetime | None = None
    last_error: str | None = None
    created_by: str = ""


class PipelinePage(Result):
    data: list[Pipeline]
    next_cursor: str | None = None
