"""The Documents tab in a real browser: upload a file, watch its ingestion job finish, find it in the library,
download the original and delete it; the ``upload_rag_docs`` toggle hides the upload for a plain user."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.frontend.conftest import User, sign_in
from tests.frontend.rag_page import open_tab, pick, screenshot, toast
from tests.frontend.shots import screenshot_path
from tests.support import LisaServer

TEXT = "# Lighthouse keeping\n\nThe lamp of the Bell Rock lighthouse is lit at dusk and trimmed every four hours.\n"


def fresh_repository(admin: httpx.Client, prefix: str) -> str:
    repo_id = f"{prefix}-{secrets.token_hex(3)}"
    resp = admin.post("/api/repositories", json={"id": repo_id, "name": f"Library {repo_id}"})
    assert resp.status_code == 201, resp.text
    return repo_id


def test_upload_watch_the_job_download_and_delete(
    page: Page, lisa: LisaServer, user: User, admin: httpx.Client, tmp_path: Path
) -> None:
    repo_id = fresh_repository(admin, "docs-ui")
    source = tmp_path / "lighthouse.md"
    source.write_text(TEXT)
    sign_in(page, lisa, user.token)
    open_tab(page, "Documents")
    pick(page, "#lisa-docs-repo", f"Library {repo_id} ({repo_id})")
    expect(page.locator("#lisa-docs-collection input")).to_have_value("Default (default)")

    page.set_input_files("#lisa-docs-files input[type=file]", str(source))
    expect(page.locator("#lisa-docs-files")).to_contain_text("lighthouse.md")
    page.fill("#lisa-docs-tags textarea", "maritime, safety")
    page.click("#lisa-docs-send")
    # The timer polls the job until it ends; the library then lists the document.
    expect(page.locator("#lisa-docs-jobs")).to_contain_text("completed", timeout=90_000)
    expect(page.locator("#lisa-docs-jobs")).to_contain_text("1/1")
    expect(page.locator("#lisa-docs-list")).to_contain_text("lighthouse.md")
    expect(page.locator("#lisa-docs-list")).to_contain_text("maritime, safety")
    (doc,) = user.api.get(f"/api/repositories/{repo_id}/documents").json()["data"]
    assert doc["name"] == "lighthouse.md" and doc["tags"] == ["maritime", "safety"] and doc["chunk_count"] >= 1
    screenshot(page, screenshot_path("documents.png"))

    # Download: the original, byte for byte.
    pick(page, "#lisa-docs-doc", "lighthouse.md · default")
    expect(page.locator("#lisa-docs-download")).to_be_enabled()
    with page.expect_download() as download:
        page.click("#lisa-docs-download")
    saved = tmp_path / "downloaded.md"
    download.value.save_as(saved)
    assert saved.read_text() == TEXT and download.value.suggested_filename == "lighthouse.md"

    # Delete: gone from the list and from the backend.
    page.click("#lisa-docs-delete")
    toast(page, "Deleted the document")
    expect(page.locator("#lisa-docs-list")).not_to_contain_text("lighthouse.md")
    assert user.api.get(f"/api/repositories/{repo_id}/documents/{doc['id']}").status_code == 404


def test_a_refused_upload_shows_the_backends_message(
    page: Page, lisa: LisaServer, user: User, admin: httpx.Client, tmp_path: Path
) -> None:
    repo_id = fresh_repository(admin, "docs-ui-bad")
    note = tmp_path / "note.md"
    note.write_text("# Note\n\nA short note.\n")
    sign_in(page, lisa, user.token)
    open_tab(page, "Documents")
    pick(page, "#lisa-docs-repo", f"Library {repo_id} ({repo_id})")
    page.click("#lisa-docs-send")
    toast(page, "Choose one or more files first.")
    page.fill("#lisa-docs-tags textarea", ", ".join(f"t{i}" for i in range(60)))  # the backend allows 50
    page.set_input_files("#lisa-docs-files input[type=file]", str(note))
    expect(page.locator("#lisa-docs-files")).to_contain_text("note.md")
    page.click("#lisa-docs-send")
    toast(page, "at most 50 tags")
    assert user.api.get(f"/api/repositories/{repo_id}/jobs").json()["data"] == []


def test_the_upload_toggle_hides_the_upload_for_a_plain_user(
    page: Page, lisa: LisaServer, user: User, admin: httpx.Client
) -> None:
    repo_id = fresh_repository(admin, "docs-ui-off")
    resp = admin.patch("/api/configuration", json={"features": {"upload_rag_docs": False}})
    assert resp.status_code == 200, resp.text
    try:
        sign_in(page, lisa, user.token)
        open_tab(page, "Documents")
        expect(page.locator("#lisa-docs-notice")).to_contain_text("Uploading documents is turned off")
        expect(page.locator("#lisa-docs-upload")).to_be_hidden()
        expect(page.locator("#lisa-docs-library")).to_be_visible()
        # The backend refuses what the app hides.
        upload = user.api.post(
            f"/api/repositories/{repo_id}/collections/default/documents", files={"files": ("a.md", b"# A\n\nText.")}
        )
        assert upload.status_code == 403, upload.text
    finally:
        restore = admin.patch("/api/configuration", json={"features": {"upload_rag_docs": None}})
        assert restore.status_code == 200, restore.text


def test_a_running_job_updates_live_and_can_be_cancelled(
    page: Page, lisa: LisaServer, user: User, admin: httpx.Client, tmp_path: Path
) -> None:
    repo_id = fresh_repository(admin, "docs-ui-cancel")
    paragraph = "Tide tables list the times of high and low water at a harbour, day by day. " * 40
    files = []
    for i in range(100):  # the most one upload may carry; enough chunks to embed that the job runs a while
        path = tmp_path / f"harbour-{i:03}.md"
        path.write_text(f"# Harbour {i}\n\n" + "\n\n".join(f"{n} {paragraph}" for n in range(8)))
        files.append(str(path))
    sign_in(page, lisa, user.token)
    open_tab(page, "Documents")
    pick(page, "#lisa-docs-repo", f"Library {repo_id} ({repo_id})")
    page.set_input_files("#lisa-docs-files input[type=file]", files)
    expect(page.locator("#lisa-docs-files")).to_contain_text("harbour-000.md", timeout=60_000)
    page.click("#lisa-docs-send")
    # The running job is offered for cancelling while the table follows it.
    expect(page.locator("#lisa-docs-job input")).to_have_value(re.compile(r"^job-"), timeout=30_000)
    expect(page.locator("#lisa-docs-jobs")).to_contain_text(re.compile(r"pending|in progress"))
    expect(page.locator("#lisa-docs-jobs")).to_contain_text("/100")
    page.click("#lisa-docs-cancel")
    toast(page, "Job job-")
    expect(page.locator("#lisa-docs-jobs")).to_contain_text("cancelled", timeout=60_000)
    expect(page.locator("#lisa-docs-job input")).to_have_value("")  # nothing running: the timer stopped
    (job,) = user.api.get(f"/api/repositories/{repo_id}/jobs").json()["data"]
    assert job["status"] == "cancelled" and job["documents_done"] < 100
