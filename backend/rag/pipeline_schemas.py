"""The request and response bodies of ingestion pipelines (``/api/repositories/{id}/pipelines``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from backend.paging import Page
from backend.rag.schemas import Chunking, Tag
from backend.text import Text


class S3Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["s3"]
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: Text = Field(default="", max_length=1024)
    queue_url: AnyHttpUrl | None = Field(default=None, description="SQS queue receiving the bucket's notifications.")


class FolderSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["folder"]
    path: Text = Field(min_length=1, max_length=4096, description="A server folder under LISA_RAG_INGEST_ROOTS.")


class EventTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["event"]


class ScheduleTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["schedule"]
    cron: Text = Field(max_length=256, description="Five-field cron, UTC, e.g. '*/5 * * * *'.")

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"not a five-field cron expression: {value!r}")
        return value


PipelineSource = Annotated[S3Source | FolderSource, Field(discriminator="type")]
PipelineTrigger = Annotated[EventTrigger | ScheduleTrigger, Field(discriminator="type")]


class PipelineCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=256)
    collection_id: Text = "default"
    source: PipelineSource
    trigger: PipelineTrigger
    chunking: Chunking | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    auto_remove: bool = True
    enabled: bool = True


class PipelineUpdate(BaseModel):
    """The collection is fixed: a pipeline's documents live there. A new source drops what the old one fed in.
    ``"enabled": true`` from anyone but the owner makes the caller its owner: the runs then act with their rights."""

    model_config = ConfigDict(extra="forbid")
    name: Text | None = Field(default=None, min_length=1, max_length=256)
    source: PipelineSource | None = None
    trigger: PipelineTrigger | None = None
    chunking: Chunking | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    auto_remove: bool | None = None
    enabled: bool | None = None


class PipelinePublic(BaseModel):
    id: str
    repository_id: str
    collection_id: str
    name: str
    source: dict[str, Any]
    trigger: dict[str, Any]
    chunking: Chunking | None
    tags: list[str]
    auto_remove: bool
    enabled: bool
    last_run_at: datetime | None
    last_error: str | None = Field(description="Why the last sync failed, or why the pipeline was stopped.")
    created_by: str = Field(
        description="The pipeline's owner (users.id): its runs act with this user's current rights. The creator, "
        "or the admin or RAG admin who last sent 'enabled': true."
    )
    created_at: datetime
    updated_at: datetime


class PipelinePage(Page[PipelinePublic]):
    pass
