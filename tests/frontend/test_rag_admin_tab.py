"""The RAG admin tab in a real browser: a RAG admin creates a repository, a collection and a pipeline (forms checked
before they are sent, the backend's refusals shown); a plain user sees none of it and gets 403 from its routes."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.frontend.conftest import User, sign_in
from tests.frontend.rag_page import fill, open_tab, pick, screenshot, toast
from tests.frontend.shots import screenshot_path
from tests.support import LisaServer


@pytest.fixture
def rag_admin(admin: httpx.Client, lisa: LisaServer) -> Iterator[User]:
    name = f"ui-ragadmin-{secrets.token_hex(3)}"
    resp = admin.post("/api/tokens", json={"name": name, "username": name, "groups": ["rag-admin"]})
    assert resp.status_code == 201, resp.text
    token = resp.json()["token"]
    u = User(name, token, lisa.client(token))
    yield u
    u.api.close()


def test_a_rag_admin_creates_a_repository_a_collection_and_a_pipeline(
    page: Page, lisa: LisaServer, rag_admin: User, ingest_root: Path
) -> None:
    repo_id = f"ra-{secrets.token_hex(3)}"
    sign_in(page, lisa, rag_admin.token)
    open_tab(page, "RAG admin")
    expect(page.locator("#lisa-ra-body")).to_be_visible()
    expect(page.locator("#lisa-ra-off")).to_be_hidden()

    # Checked before sending: a bad id never reaches the backend.
    expect(page.locator("#lisa-ra-repo input")).to_have_value("— new repository —")
    fill(page, "#lisa-ra-repo-id", "Not An Id")
    page.click("#lisa-ra-repo-create")
    toast(page, "the repository id must be 1 to 64 lower-case letters")
    assert rag_admin.api.get("/api/repositories/not an id").status_code in (404, 422)

    # The backend's refusal, as its message: an embedding model that does not exist.
    fill(page, "#lisa-ra-repo-id", repo_id)
    fill(page, "#lisa-ra-repo-name", "Harbour records")
    fill(page, "#lisa-ra-repo-model", "no-such-embedder")
    page.click("#lisa-ra-repo-create")
    toast(page, "no-such-embedder")
    assert rag_admin.api.get(f"/api/repositories/{repo_id}").status_code == 404

    fill(page, "#lisa-ra-repo-model", "")
    page.click("#lisa-ra-repo-create")
    toast(page, f"Created repository {repo_id}")
    expect(page.locator("#lisa-ra-repo input")).to_have_value(f"Harbour records ({repo_id})")
    repo = rag_admin.api.get(f"/api/repositories/{repo_id}").json()
    assert repo["name"] == "Harbour records" and repo["created_by"] == rag_admin.name

    # A collection with its own chunking.
    fill(page, "#lisa-ra-coll-id", "manifests")
    fill(page, "#lisa-ra-coll-name", "Ship manifests")
    pick(page, "#lisa-ra-coll-chunking", "fixed")
    fill(page, "#lisa-ra-coll-size", "600")
    fill(page, "#lisa-ra-coll-overlap", "400")  # more than half the size: refused before sending
    page.click("#lisa-ra-coll-create")
    toast(page, "the overlap must be 0 or more and at most half the chunk size")
    fill(page, "#lisa-ra-coll-overlap", "60")
    page.click("#lisa-ra-coll-create")
    toast(page, "Created collection manifests")
    expect(page.locator("#lisa-ra-coll-info")).to_contain_text("chunking fixed 600/60")
    coll = rag_admin.api.get(f"/api/repositories/{repo_id}/collections/manifests").json()
    assert coll["name"] == "Ship manifests" and coll["chunking"] == {"strategy": "fixed", "size": 600, "overlap": 60}

    # A pipeline from a server folder on a schedule: listed, run now, deleted.
    folder = ingest_root / f"ui-{repo_id}"
    folder.mkdir()
    (folder / "tides.md").write_text("# Tides\n\nHigh water at 06:12 and 18:40.\n")
    page.get_by_text("New pipeline").click()
    fill(page, "#lisa-ra-pipe-name", "Tide tables")
    fill(page, "#lisa-ra-pipe-coll", "manifests")
    fill(page, "#lisa-ra-pipe-path", str(folder))
    page.locator("#lisa-ra-pipe-trigger").get_by_text("On a schedule").click()
    fill(page, "#lisa-ra-pipe-cron", "every five minutes")
    page.click("#lisa-ra-pipe-create")
    toast(page, "five-field cron expression")
    fill(page, "#lisa-ra-pipe-cron", "*/30 * * * *")
    page.click("#lisa-ra-pipe-create")
    toast(page, "Created pipeline Tide tables")
    expect(page.locator("#lisa-ra-pipelines")).to_contain_text("schedule */30 * * * *")
    expect(page.locator("#lisa-ra-pipelines")).to_contain_text("never")
    (pipeline,) = rag_admin.api.get(f"/api/repositories/{repo_id}/pipelines").json()["data"]
    assert pipeline["source"]["path"] == str(folder) and pipeline["collection_id"] == "manifests"
    screenshot(page, screenshot_path("rag-admin.png"))

    pick(page, "#lisa-ra-pipeline", f"Tide tables ({pipeline['id']})")
    page.click("#lisa-ra-pipe-run")
    toast(page, "Started job")
    expect(page.locator("#lisa-ra-pipelines")).not_to_contain_text("never")
    pick(page, "#lisa-ra-pipeline", f"Tide tables ({pipeline['id']})")
    page.click("#lisa-ra-pipe-delete")
    toast(page, "Deleted the pipeline")
    expect(page.locator("#lisa-ra-pipelines")).not_to_contain_text("Tide tables")
    assert rag_admin.api.get(f"/api/repositories/{repo_id}/pipelines").json()["data"] == []

    # Delete the collection, then the repository.
    page.click("#lisa-ra-coll-delete")
    toast(page, "Deleted collection manifests")
    assert rag_admin.api.get(f"/api/repositories/{repo_id}/collections/manifests").status_code == 404
    page.click("#lisa-ra-repo-delete")
    toast(page, f"Deleted repository {repo_id}")
    assert rag_admin.api.get(f"/api/repositories/{repo_id}").status_code == 404


def test_a_plain_user_sees_no_rag_admin_and_the_backend_refuses_them(
    page: Page, lisa: LisaServer, user: User, admin: httpx.Client
) -> None:
    repo_id = f"ra-plain-{secrets.token_hex(3)}"
    assert admin.post("/api/repositories", json={"id": repo_id}).status_code == 201
    sign_in(page, lisa, user.token)
    open_tab(page, "RAG admin")
    expect(page.locator("#lisa-ra-off")).to_be_visible()
    expect(page.locator("#lisa-ra-body")).to_be_hidden()
    expect(page.locator("#lisa-ra-repo-create")).to_be_hidden()
    # Every route behind the tab answers 403 to them, whatever the app shows.
    api = user.api
    assert api.post("/api/repositories", json={"id": f"{repo_id}-x"}).status_code == 403
    assert api.patch(f"/api/repositories/{repo_id}", json={"name": "Mine now"}).status_code == 403
    assert api.post(f"/api/repositories/{repo_id}/collections", json={"id": "c"}).status_code == 403
    assert api.delete(f"/api/repositories/{repo_id}").status_code == 403
    assert api.get(f"/api/repositories/{repo_id}/pipelines").status_code == 403
    body = {"name": "p", "source": {"type": "folder", "path": "/tmp"}, "trigger": {"type": "event"}}
    assert api.post(f"/api/repositories/{repo_id}/pipelines", json=body).status_code == 403
    assert admin.get(f"/api/repositories/{repo_id}").json()["name"] != "Mine now"
