"""Typed results of the chat tab's extra calls: RAG repositories and collections, documents in a session's
context, projects and share links (unknown fields ignored, as in ``frontend/schemas.py``)."""

from __future__ import annotations

from pydantic import Field

from frontend.schemas import Result


class Repository(Result):
    id: str
    name: str = ""


class Collection(Result):
    repository_id: str
    id: str
    name: str = ""


class ContextDocument(Result):
    id: str
    name: str
    size_bytes: int = 0
    chars: int = 0
    tokens: int = 0
    summary: str | None = None
    summary_model: str | None = None


class ContextNotice(Result):
    document_id: str = ""
    name: str = ""
    kept_tokens: int = 0
    total_tokens: int = 0
    omitted: bool = False
    message: str


class ContextPreview(Result):
    model: str
    context_window: int = 0
    budget_tokens: int = 0
    documents_tokens: int = 0
    notices: list[ContextNotice] = Field(default_factory=list)


class Project(Result):
    id: str
    name: str


class ShareLink(Result):
    token: str
    path: str
