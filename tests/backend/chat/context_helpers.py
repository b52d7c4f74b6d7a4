"""Helpers of the chat-context tests: models registered for a test, sessions seeded through the import API."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


@contextmanager
def registered_model(admin: httpx.Client, prefix: str, **fields: Any) -> Iterator[str]:
    """A model registered for the block (a fresh id), deleted after it."""
    model_id = f"{prefix}-{secrets.token_hex(3)}"
    resp = admin.post("/api/models", json={"id": model_id, **fields})
    assert resp.status_code == 201, resp.text
    try:
        yield model_id
    finally:
        admin.delete(f"/api/models/{model_id}")


@contextmanager
def local_gemma(admin: httpx.Client, prefix: str, context_window: int, features: list[str]) -> Iterator[str]:
    """The session's llama.cpp gemma3-270m registered again, with the context window and features a test wants."""
    base_url = admin.get("/api/models/gemma3-270m").json()["base_url"]
    with registered_model(
        admin, prefix, type="textgen", hosting="internal", base_url=base_url, upstream_model="gemma3-270m",
        context_window=context_window, features=features,
    ) as model_id:  # fmt: skip
        yield model_id


def import_session(client: httpx.Client, contents: list[tuple[str, str]], **session: Any) -> dict[str, Any]:
    """A session with one branch of messages (role, content; a role "summary" is an earlier compaction summary),
    through POST /api/sessions/import; the session as GET /api/sessions/{id} shows it."""
    messages = []
    parent = None
    for n, (role, content) in enumerate(contents):
        meta = {"kind": "summary", "covers": [f"m{i}" for i in range(n)]} if role == "summary" else {}
        messages.append({"id": f"m{n}", "parent_id": parent, "role": "system" if role == "summary" else role,
                         "content": content, "metadata": meta, "status": "complete", "error": None,
                         "created_at": f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z"})  # fmt: skip
        parent = f"m{n}"
    doc = {"format": "lisa.chat.session", "version": 1, "exported_at": "2026-01-02T00:00:00Z",
           "session": {"title": "seeded", "active_leaf_id": parent, "created_at": "2026-01-01T00:00:00Z",
                       "updated_at": "2026-01-01T00:00:00Z", **session},
           "messages": messages}  # fmt: skip
    resp = client.post("/api/sessions/import", json=doc)
    assert resp.status_code == 201, resp.text
    shown = client.get(f"/api/sessions/{resp.json()['id']}")
    assert shown.status_code == 200, shown.text
    return dict(shown.json())


def upload(client: httpx.Client, session_id: str, *files: tuple[str, bytes]) -> httpx.Response:
    return client.post(f"/api/sessions/{session_id}/documents", files=[("files", (name, data)) for name, data in files])
