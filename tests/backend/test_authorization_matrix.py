"""Every route x every kind of caller -> the expected status. The routes come from the app's own route table
(plus the gateway's list), so a new route without a rule here makes this test fail."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.routing import APIRoute

from backend.config import Settings
from backend.main import create_api
from backend.serve.gateway import PATHS as GATEWAY_PATHS
from tests.support import LisaServer, Proc

PUBLIC, USER, ADMIN, RAG_ADMIN = "public", "user", "admin", "rag_admin"
# (method, path template) -> who may call it. Resource visibility (allowed_groups) is checked separately below.
RULES: dict[tuple[str, str], str] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/logout"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("GET", "/auth/login"): PUBLIC,
    ("GET", "/auth/callback"): PUBLIC,
    ("GET", "/docs"): USER,
    ("GET", "/openapi.json"): USER,
    ("GET", "/docs/assets/{name}"): PUBLIC,
    ("GET", "/api/models"): USER,
    ("GET", "/api/models/{model_id}"): USER,
    ("POST", "/api/models"): ADMIN,
    ("PATCH", "/api/models/{model_id}"): ADMIN,
    ("DELETE", "/api/models/{model_id}"): ADMIN,
    ("GET", "/api/models/{model_id}/events"): ADMIN,
    ("GET", "/api/models/{model_id}/logs"): ADMIN,
    ("POST", "/api/models/{model_id}/enable"): ADMIN,
    ("POST", "/api/models/{model_id}/disable"): ADMIN,
    ("GET", "/api/models/{model_id}/schedule"): ADMIN,
    ("PUT", "/api/models/{model_id}/schedule"): ADMIN,
    ("DELETE", "/api/models/{model_id}/schedule"): ADMIN,
    ("GET", "/api/tokens"): USER,
    ("POST", "/api/tokens"): USER,
    ("GET", "/api/tokens/{token_id}"): USER,
    ("DELETE", "/api/tokens/{token_id}"): USER,
    ("DELETE", "/api/tokens"): USER,  # all of one user's tokens: one's own, or anyone's for admins
    ("GET", "/api/users/me"): USER,
    ("GET", "/api/users"): ADMIN,
    ("GET", "/api/usage"): ADMIN,
    ("GET", "/api/usage/me"): USER,
    ("GET", "/api/audit"): ADMIN,
    ("GET", "/api/limits"): ADMIN,
    ("GET", "/api/limits/me"): USER,
    ("PUT", "/api/limits/{scope}/{subject}"): ADMIN,
    ("DELETE", "/api/limits/{scope}/{subject}"): ADMIN,
    ("GET", "/api/repositories"): USER,
    ("POST", "/api/repositories"): RAG_ADMIN,
    ("GET", "/api/repositories/{repository_id}"): USER,
    ("PATCH", "/api/repositories/{repository_id}"): RAG_ADMIN,
    ("DELETE", "/api/repositories/{repository_id}"): RAG_ADMIN,
    ("GET", "/api/repositories/{repository_id}/collections"): USER,
    ("POST", "/api/repositories/{repository_id}/collections"): RAG_ADMIN,
    ("GET", "/api/repositories/{repository_id}/collections/{collection_id}"): USER,
    ("PATCH", "/api/repositories/{repository_id}/collections/{collection_id}"): RAG_ADMIN,
    ("DELETE", "/api/repositories/{repository_id}/collections/{collection_id}"): RAG_ADMIN,
    ("GET", "/api/repositories/{repository_id}/search"): USER,
    ("POST", "/api/repositories/{repository_id}/collections/{collection_id}/documents"): USER,
    ("POST", "/api/repositories/{repository_id}/collections/{collection_id}/ingest"): RAG_ADMIN,
    ("GET", "/api/repositories/{repository_id}/jobs"): USER,
    ("GET", "/api/repositories/{repository_id}/jobs/{job_id}"): USER,
    ("POST", "/api/repositories/{repository_id}/jobs/{job_id}/cancel"): USER,
    ("GET", "/api/repositories/{repository_id}/documents"): USER,
    ("GET", "/api/repositories/{repository_id}/documents/{document_id}"): USER,
    ("GET", "/api/repositories/{repository_id}/documents/{document_id}/content"): USER,
    ("DELETE", "/api/repositories/{repository_id}/documents/{document_id}"): USER,
    ("GET", "/api/repositories/{repository_id}/pipelines"): RAG_ADMIN,
    ("POST", "/api/repositories/{repository_id}/pipelines"): RAG_ADMIN,
    ("GET", "/api/repositories/{repository_id}/pipelines/{pipeline_id}"): RAG_ADMIN,
    ("PATCH", "/api/repositories/{repository_id}/pipelines/{pipeline_id}"): RAG_ADMIN,
    ("DELETE", "/api/repositories/{repository_id}/pipelines/{pipeline_id}"): RAG_ADMIN,
    ("POST", "/api/repositories/{repository_id}/pipelines/{pipeline_id}/run"): RAG_ADMIN,
    ("GET", "/api/configuration"): USER,
    ("PUT", "/api/configuration"): ADMIN,
    ("PATCH", "/api/configuration"): ADMIN,  # the matrix's empty body changes nothing (no new version)
    ("GET", "/api/configuration/history"): ADMIN,
    ("GET", "/api/configuration/history/{version}"): ADMIN,
    ("POST", "/api/configuration/history/{version}/restore"): ADMIN,
    ("GET", "/api/prompt-templates"): USER,
    ("POST", "/api/prompt-templates"): USER,
    ("GET", "/api/prompt-templates/{template_id}"): USER,
    ("PATCH", "/api/prompt-templates/{template_id}"): USER,  # the owner's only (403 for others who see it)
    ("DELETE", "/api/prompt-templates/{template_id}"): USER,  # the owner's, or an admin's
    ("GET", "/api/prompt-templates/{template_id}/revisions"): USER,
    ("POST", "/api/prompt-templates/{template_id}/revisions/{revision}/restore"): USER,
    ("POST", "/api/prompt-templates/{template_id}/render"): USER,
    ("GET", "/api/assistants"): USER,
    ("POST", "/api/assistants"): ADMIN,
    ("GET", "/api/assistants/{assistant_id}"): USER,
    ("PATCH", "/api/assistants/{assistant_id}"): ADMIN,
    ("DELETE", "/api/assistants/{assistant_id}"): ADMIN,
    ("GET", "/api/mcp/servers"): USER,
    ("POST", "/api/mcp/servers"): USER,  # personal servers; global and stdio ones need the admin group (403)
    ("GET", "/api/mcp/servers/{server_id}"): USER,
    ("PATCH", "/api/mcp/servers/{server_id}"): USER,  # one's own; global servers: admins
    ("DELETE", "/api/mcp/servers/{server_id}"): USER,
    ("GET", "/api/mcp/servers/{server_id}/tools"): USER,
    ("POST", "/api/mcp/servers/{server_id}/tools/{tool_name}/call"): USER,
    ("GET", "/api/mcp/tools"): USER,
    ("GET", "/api/sessions"): USER,
    ("POST", "/api/sessions"): USER,
    ("DELETE", "/api/sessions"): USER,  # every session of the caller's own
    ("POST", "/api/sessions/import"): USER,
    ("GET", "/api/sessions/{session_id}"): USER,
    ("PATCH", "/api/sessions/{session_id}"): USER,
    ("DELETE", "/api/sessions/{session_id}"): USER,
    ("GET", "/api/sessions/{session_id}/export"): USER,
    ("POST", "/api/sessions/{session_id}/share"): USER,
    ("DELETE", "/api/sessions/{session_id}/share"): USER,
    ("POST", "/api/sessions/{session_id}/messages"): USER,
    ("POST", "/api/sessions/{session_id}/tool-calls/{call_id}"): USER,
    ("GET", "/api/shared/{token}"): USER,  # and only when the reader may see every model and repository it used
    ("GET", "/api/projects"): USER,
    ("POST", "/api/projects"): USER,
    ("GET", "/api/projects/{project_id}"): USER,
    ("PATCH", "/api/projects/{project_id}"): USER,
    ("DELETE", "/api/projects/{project_id}"): USER,
    # chat context: every route acts on the caller's own session only (another's answers 404: test_chat_context*.py)
    ("POST", "/api/sessions/{session_id}/documents"): USER,
    ("GET", "/api/sessions/{session_id}/documents"): USER,
    ("GET", "/api/sessions/{session_id}/documents/{document_id}"): USER,
    ("DELETE", "/api/sessions/{session_id}/documents/{document_id}"): USER,
    ("POST", "/api/sessions/{session_id}/documents/{document_id}/summary"): USER,
    ("POST", "/api/sessions/{session_id}/images"): USER,
    ("GET", "/api/sessions/{session_id}/images"): USER,
    ("GET", "/api/sessions/{session_id}/images/{image_id}"): USER,
    ("POST", "/api/sessions/{session_id}/compact"): USER,
    ("GET", "/api/sessions/{session_id}/context"): USER,
    ("GET", "/v1/models"): USER,
    ("GET", "/v1/models/{model_id}"): USER,
    ("POST", "/v1/chat/completions"): USER,
    ("POST", "/v1/completions"): USER,
    ("POST", "/v1/embeddings"): USER,
    ("POST", "/v1/images/generations"): USER,
}
CALLERS = ["anonymous", "user", "other_group", "rag_admin", "admin", "expired", "revoked"]
RESTRICTED = "matrix-restricted"  # allowed_groups: team-a, which only "user" (and admins) may see


def app_routes() -> set[tuple[str, str]]:
    app = create_api(Settings(), "postgresql://unused@127.0.0.1:1/unused")  # the table only; nothing starts
    found: set[tuple[str, str]] = set()

    def walk(routes: list) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.update((m, route.path.replace(":path", "")) for m in route.methods or ())
            elif hasattr(route, "original_router"):  # FastAPI's included routers
                walk(route.original_router.routes)

    walk(app.routes)
    assert len(found) > 10, "the route walk found almost nothing: has FastAPI's route table changed shape?"
    return found | set(GATEWAY_PATHS)


def test_every_route_has_a_rule() -> None:
    routes = app_routes()
    missing = sorted(routes - RULES.keys())
    assert not missing, f"routes without an authorization rule (add them to RULES): {missing}"
    stale = sorted(RULES.keys() - routes)
    assert not stale, f"rules for routes that no longer exist: {stale}"


@pytest.fixture(scope="module")
def callers(admin: httpx.Client, lisa: LisaServer, faulty_upstream: Proc) -> Iterator[dict[str, dict[str, str]]]:
    def token(name: str, groups: list[str], **extra: str) -> str:
        resp = admin.post("/api/tokens", json={"name": name, "username": f"matrix-{name}", "groups": groups, **extra})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["token"])

    admin.delete(f"/api/models/{RESTRICTED}")
    admin.delete(f"/api/repositories/{RESTRICTED}")
    repo = {"id": RESTRICTED, "allowed_groups": ["team-a"]}
    assert admin.post("/api/repositories", json=repo).status_code == 201
    # A live upstream, so a caller who is let through gets a real answer: any 5xx is then a failure of the matrix.
    body = {"id": RESTRICTED, "type": "textgen", "hosting": "internal", "base_url": faulty_upstream.url + "/v1",
            "upstream_model": "ok", "allowed_groups": ["team-a"]}  # fmt: skip
    assert admin.post("/api/models", json=body).status_code == 201
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    tokens = {
        "user": token("user", ["team-a"]),
        "other_group": token("other", ["team-b"]),
        "rag_admin": token("rag", ["rag-admin"]),
        "admin": lisa.token,
        "expired": token("expired", ["team-a"], expires_at=soon),
        "revoked": token("revoked", ["team-a"]),
    }
    revoked_id = next(t["id"] for t in admin.get("/api/tokens", params={"all_users": "true", "limit": 500}).json()["data"]
                      if t["username"] == "matrix-revoked")  # fmt: skip
    assert admin.delete(f"/api/tokens/{revoked_id}").status_code == 204
    time.sleep(1.2)
    # The anonymous caller is a script, not a browser: it says so (X-Requested-With), as the cross-site check of
    # unsafe requests without credentials in a header asks (tests/backend/test_csrf.py tests that check itself).
    anonymous = {"X-Requested-With": "authorization-matrix"}
    yield {"anonymous": anonymous} | {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}
    admin.delete(f"/api/models/{RESTRICTED}")
    admin.delete(f"/api/repositories/{RESTRICTED}")


def request_for(method: str, path: str) -> tuple[str, dict | None]:
    target = RESTRICTED if method == "GET" else "matrix-missing"  # writes aim at nothing, so nothing changes
    url = path.replace("{model_id}", target).replace("{repository_id}", target)
    url = url.replace("{template_id}", "pt-0").replace("{assistant_id}", "asst-missing").replace("{revision}", "1")
    for name in ("{collection_id}", "{job_id}", "{document_id}", "{pipeline_id}", "{session_id}", "{project_id}",
                 "{token}", "{image_id}"):  # fmt: skip
        url = url.replace(name, "default" if name == "{collection_id}" else "matrix-missing")
    url = url.replace("{server_id}", "mcp_matrixmissing").replace("{tool_name}", "add")
    url = (
        url.replace("{token_id}", "tok_matrixmissing").replace("{scope}", "user").replace("{subject}", "matrix-nobody")
    ).replace("{name}", "swagger-ui.css")
    url = url.replace("{version}", "999999")  # a configuration version that does not exist
    if path.startswith("/v1/") and method == "POST":
        field = GATEWAY_BODIES[path.removeprefix("/v1/")]
        return url, {"model": RESTRICTED, field: [{"role": "user", "content": "x"}] if field == "messages" else "x"}
    return url, ({} if method in ("POST", "PATCH", "PUT") else None)


GATEWAY_BODIES = {"chat/completions": "messages", "completions": "prompt", "embeddings": "input",
                  "images/generations": "prompt"}  # fmt: skip


def expected(rule: str, caller: str, method: str, path: str) -> set[int] | str:
    """A set of statuses, or "allowed": an answer that is neither a refusal (401, 403) nor a server error (5xx)."""
    if rule == PUBLIC:
        return "allowed"
    if caller in ("anonymous", "expired", "revoked"):
        return {401}
    if rule == ADMIN and caller != "admin":
        return {403}
    if rule == RAG_ADMIN and caller not in ("admin", "rag_admin"):
        return {403}
    hidden = caller in ("other_group", "rag_admin")
    if hidden and "{model_id}" in path and method == "GET":
        return {404}  # a model one may not see does not exist for them
    if hidden and path.startswith("/v1/") and method == "POST":
        return {404}
    return "allowed"


@pytest.mark.parametrize("caller", CALLERS)
def test_matrix(lisa: LisaServer, callers: dict[str, dict[str, str]], caller: str) -> None:
    failures = []
    with httpx.Client(base_url=lisa.url, timeout=30, follow_redirects=False) as client:
        for (method, path), rule in sorted(RULES.items()):
            url, body = request_for(method, path)
            resp = client.request(method, url, json=body, headers=callers[caller])
            want = expected(rule, caller, method, path)
            if want == "allowed":
                ok = resp.status_code not in (401, 403) and resp.status_code < 500
            else:
                ok = resp.status_code in want
            if not ok:
                failures.append(f"{caller} {method} {url}: got {resp.status_code}, want {want}: {resp.text[:120]}")
    assert not failures, "\n".join(failures)
