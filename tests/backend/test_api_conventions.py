"""The /api conventions the OpenAPI document promises, through the running server: one error shape everywhere,
text that PostgreSQL cannot store refused with 422, a model's status left to its lifecycle, full pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend.rag.helpers import fresh_repository
from tests.support import LisaServer

REPO = "conventions"


def detail(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    message: str = body["detail"]
    return message


def raw_json(client: httpx.Client, method: str, path: str, text: str) -> httpx.Response:
    """A JSON body written by hand: the escapes (a lone surrogate) reach the server as they are."""
    return client.request(method, path, content=text.encode(), headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def repository(admin: httpx.Client, ingest_root: Path) -> Iterator[str]:
    fresh_repository(admin, REPO)
    yield REPO
    admin.delete(f"/api/repositories/{REPO}")


def folder_pipeline(name: str, folder: Path, collection: str = "default", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "collection_id": collection,
        "source": {"type": "folder", "path": str(folder)},
        "trigger": {"type": "schedule", "cron": "0 0 1 1 *"},
        "enabled": False,
        **extra,
    }


def test_the_document_declares_one_error_shape_for_every_error(admin: httpx.Client) -> None:
    document = admin.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    error = schemas["ErrorResponse"]
    assert error["required"] == ["detail"] and error["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                if int(status) >= 400:
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorResponse", (method, path, status)
            if path.startswith("/api/"):  # the request guard authenticates every /api route first
                assert {"401", "403"} <= set(responses), (method, path)
            if "requestBody" in operation and "application/json" in operation["requestBody"]["content"]:
                assert {"400", "413", "415", "422"} <= set(responses), (method, path)
    # A validation error is sent as the document says: {"detail": "<field>: <why>"}.
    assert detail(admin.get("/api/models", params={"limit": 0}), 422).startswith("limit:")


def test_text_that_postgresql_cannot_store_is_refused_with_422(
    admin: httpx.Client, repository: str, ingest_root: Path
) -> None:
    pipelines = f"/api/repositories/{repository}/pipelines"
    # Tags holding NUL or a lone surrogate once reached the INSERT and answered 500.
    body = folder_pipeline("nul", ingest_root, tags=["fine", "bad\x00tag"])
    assert "tags.1: must not contain NUL" in detail(admin.post(pipelines, json=body), 422)
    text = (
        '{"name": "s", "source": {"type": "folder", "path": "%s"}, "trigger": {"type": "event"}, "tags": ["\\ud800"]}'
    )
    message = detail(raw_json(admin, "POST", pipelines, text % ingest_root), 422)
    assert "tags.0: must not contain unpaired surrogates" in message
    # The same rule everywhere: names, descriptions, secrets, form fields, path and query parameters.
    assert "name:" in detail(raw_json(admin, "POST", "/api/tokens", '{"name": "a\\udfffb"}'), 422)
    assert "name:" in detail(admin.post("/api/tokens", json={"name": "a\x00b"}), 422)
    model = {"id": "nul-key", "type": "textgen", "hosting": "third_party", "provider_model": "openai/x"}
    assert "api_key:" in detail(admin.post("/api/models", json={**model, "api_key": "sk-\x00"}), 422)
    collection = {"id": "nul", "description": "one\x00two"}
    assert "description:" in detail(admin.post(f"/api/repositories/{repository}/collections", json=collection), 422)
    assert "actor: must not contain NUL" in detail(admin.get("/api/audit", params={"actor": "a\x00"}), 422)
    assert "model_id: must not contain NUL" in detail(admin.get("/api/models/a%00b"), 422)
    assert "subject:" in detail(admin.delete("/api/limits/user/a%00b"), 422)
    # Nothing half-written: the refused pipelines, token and model do not exist.
    assert admin.get(pipelines).json()["data"] == []
    assert admin.get("/api/models/nul-key").status_code == 404


def test_a_models_status_belongs_to_its_lifecycle(admin: httpx.Client) -> None:
    model = {"id": "lifecycle-owned", "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.1:9/v1"}
    admin.delete("/api/models/lifecycle-owned")
    assert "status:" in detail(admin.post("/api/models", json={**model, "status": "Stopped"}), 422)
    assert admin.post("/api/models", json=model).status_code == 201
    message = detail(admin.patch("/api/models/lifecycle-owned", json={"status": "Stopped"}), 422)
    assert message.startswith("status:") and "lifecycle" in message
    assert admin.get("/api/models/lifecycle-owned").json()["status"] == "InService"
    # Other fields still change, and the document does not offer status for writing.
    assert admin.patch("/api/models/lifecycle-owned", json={"name": "renamed"}).json()["name"] == "renamed"
    schemas = admin.get("/openapi.json").json()["components"]["schemas"]
    assert "status" not in schemas["ModelUpdate"]["properties"] and "status" not in schemas["ModelCreate"]["properties"]
    admin.delete("/api/models/lifecycle-owned")


def pages(client: httpx.Client, path: str, limit: int) -> list[list[dict[str, Any]]]:
    found, cursor = [], None
    while True:
        resp = client.get(path, params={"limit": limit, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        found.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return found
        assert len(found) < 500, "paging does not end"


def test_a_page_is_full_whenever_more_items_exist(
    lisa: LisaServer, admin: httpx.Client, repository: str, ingest_root: Path
) -> None:
    """Pipelines of a collection the caller may not see used to be dropped after the LIMIT: short, even empty,
    pages with a next cursor. Filters now run in SQL, and every page but the last is full."""
    collection = {"id": "hidden", "allowed_groups": ["not-the-rag-admins"]}
    assert admin.post(f"/api/repositories/{repository}/collections", json=collection).status_code == 201
    pipelines = f"/api/repositories/{repository}/pipelines"
    visible = set()
    for i in range(4):
        assert admin.post(pipelines, json=folder_pipeline(f"hidden-{i}", ingest_root, "hidden")).status_code == 201
        created = admin.post(pipelines, json=folder_pipeline(f"visible-{i}", ingest_root))
        assert created.status_code == 201, created.text
        visible.add(created.json()["id"])
    rag_admin = admin.post("/api/tokens", json={"name": "pager", "username": "rag-pager", "groups": ["rag-admin"]})
    with lisa.client(rag_admin.json()["token"]) as client:
        for limit in (1, 2, 3):
            seen = pages(client, pipelines, limit)
            assert all(len(page) == limit for page in seen[:-1]), [len(p) for p in seen]
            assert {p["id"] for page in seen for p in page} == visible
            assert len(seen) == -(-len(visible) // limit)  # no empty page at the end either
        assert "invalid cursor" in detail(client.get(pipelines, params={"cursor": "not a cursor!"}), 400)
    # Every other paged list pages the same way.
    for path in ("/api/models", "/api/tokens", "/api/users", "/api/repositories", "/api/audit"):
        seen = pages(admin, path, 7)
        assert all(len(page) == 7 for page in seen[:-1]), (path, [len(p) for p in seen])
        ids = [item.get("id") for page in seen for item in page]
        assert len(ids) == len(set(ids)), path
    for pipeline in visible:
        admin.delete(f"{pipelines}/{pipeline}")
