"""The RAG admin forms checked before they are sent: each builds the backend's request body from what was typed,
or raises ``FormError`` naming every problem, so an obvious mistake never reaches the backend (which checks all of
it again and has the last word)."""

from __future__ import annotations

import re
from typing import Any

RESOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
GROUP = re.compile(r"^[^\s,]{1,128}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?LW#]+$")
STRATEGIES = ["tokens", "fixed", "markdown", "none"]


class FormError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def split_list(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def _id(value: str, what: str, problems: list[str]) -> str:
    value = (value or "").strip()
    if not RESOURCE_ID.match(value):
        problems.append(
            f"{what} must be 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


def _groups(raw: str, problems: list[str]) -> list[str]:
    groups = split_list(raw)
    if len(groups) > 100 or any(not GROUP.match(g) for g in groups):
        problems.append("allowed groups: up to 100 names without spaces, comma-separated")
    return groups


def _name(value: str, problems: list[str], required: bool) -> str | None:
    value = (value or "").strip()
    if len(value) > 256:
        problems.append("the name is longer than 256 characters")
    if required and not value:
        problems.append("a name is required")
    return value or None


def chunking(strategy: str, size: float | None, overlap: float | None, problems: list[str]) -> dict[str, Any]:
    if strategy not in STRATEGIES:
        problems.append(f"chunking must be one of {', '.join(STRATEGIES)}")
        return {}
    body: dict[str, Any] = {"strategy": strategy}
    if strategy == "none":
        return body
    if size:
        if not 1 <= int(size) <= 10_000 or (strategy == "fixed" and int(size) < 100):
            problems.append("chunk size must be 1 to 10000 (100 to 10000 characters for 'fixed')")
        body["size"] = int(size)
    if overlap is not None:
        if int(overlap) < 0 or (size and int(overlap) > int(size) // 2):
            problems.append("the overlap must be 0 or more and at most half the chunk size")
        body["overlap"] = int(overlap)
    return body


def _done(problems: list[str], body: dict[str, Any]) -> dict[str, Any]:
    if problems:
        raise FormError(problems)
    return body


def repository_body(repo_id: str, name: str, embedding_model: str, groups: str, *, new: bool) -> dict[str, Any]:
    problems: list[str] = []
    body: dict[str, Any] = {}
    if new:
        body["id"] = _id(repo_id, "the repository id", problems)
    if (title := _name(name, problems, required=False)) is not None:
        body["name"] = title
    if model := (embedding_model or "").strip():
        body["embedding_model"] = model
    body["allowed_groups"] = _groups(groups, problems)
    return _done(problems, body)


def collection_body(
    collection_id: str,
    name: str,
    description: str,
    embedding_model: str,
    strategy: str,
    size: float | None,
    overlap: float | None,
    allow_override: bool,
    groups: str,
    *,
    new: bool,
) -> dict[str, Any]:
    problems: list[str] = []
    body: dict[str, Any] = {}
    if new:
        body["id"] = _id(collection_id, "the collection id", problems)
        if model := (embedding_model or "").strip():
            body["embedding_model"] = model
    if (title := _name(name, problems, required=False)) is not None:
        body["name"] = title
    if len(description or "") > 4000:
        problems.append("the description is longer than 4000 characters")
    body["description"] = description or ""
    body["chunking"] = chunking(strategy, size, overlap, problems)
    body["allow_chunking_override"] = bool(allow_override)
    body["allowed_groups"] = _groups(groups, problems)
    return _done(problems, body)


def pipeline_body(
    name: str,
    collection_id: str,
    source_type: str,
    path: str,
    bucket: str,
    prefix: str,
    trigger_type: str,
    cron: str,
    tags: str,
    auto_remove: bool,
    enabled: bool,
) -> dict[str, Any]:
    problems: list[str] = []
    body: dict[str, Any] = {"name": _name(name, problems, required=True)}
    body["collection_id"] = _id(collection_id or "default", "the collection", problems)
    if source_type == "folder":
        if not (path or "").strip().startswith("/"):
            problems.append("the folder must be an absolute server path (under LISA_RAG_INGEST_ROOTS)")
        body["source"] = {"type": "folder", "path": (path or "").strip()}
    elif source_type == "s3":
        if not BUCKET.match((bucket or "").strip()):
            problems.append("the bucket must be a valid S3 bucket name (3 to 63 lower-case letters, digits, '.', '-')")
        body["source"] = {"type": "s3", "bucket": (bucket or "").strip(), "prefix": (prefix or "").strip()}
    else:
        problems.append("choose a source: a server folder or S3")
    if trigger_type == "schedule":
        fields = (cron or "").split()
        if len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields):
            problems.append("the schedule must be a five-field cron expression, e.g. '*/15 * * * *' (UTC)")
        body["trigger"] = {"type": "schedule", "cron": " ".join(fields)}
    elif trigger_type == "event":
        body["trigger"] = {"type": "event"}
    else:
        problems.append("choose a trigger: on change (event) or on a schedule")
    tag_list = split_list(tags)
    if len(tag_list) > 50 or any(len(t) > 128 for t in tag_list):
        problems.append("at most 50 tags of at most 128 characters")
    body["tags"] = tag_list
    body["auto_remove"] = bool(auto_remove)
    body["enabled"] = bool(enabled)
    return _done(problems, body)
