"""Pipelines act as their owner, with the owner's rights as they are at each sync, and stop when those lapse.

Driven through the session's LISA: folder pipelines under its ingest root, owners who are local users whose groups
are those of their valid tokens (revoking the token that grants a group takes the group away)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend.rag.helpers import fresh_repository, wait_job
from tests.support import LisaServer, wait_for

YEARLY = {"type": "schedule", "cron": "0 0 1 1 *"}  # never fires while the tests run: runs come from POST /run


def token(lisa: LisaServer, admin: httpx.Client, username: str, groups: list[str]) -> tuple[httpx.Client, str]:
    """A client acting with a new token of ``username`` (a local user), and the token's id."""
    resp = admin.post("/api/tokens", json={"name": f"{username} {groups}", "username": username, "groups": groups})
    assert resp.status_code == 201, resp.text
    return lisa.client(resp.json()["token"]), resp.json()["id"]


class Pipeline:
    """One pipeline seen through the admin's client."""

    def __init__(self, admin: httpx.Client, repo: str, body: dict[str, Any]) -> None:
        self.admin, self.repo, self.data = admin, repo, body
        self.url = f"/api/repositories/{repo}/pipelines/{body['id']}"

    def state(self) -> dict[str, Any]:
        resp = self.admin.get(self.url)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def jobs(self) -> list[dict[str, Any]]:
        """Its jobs, oldest first, each with its items."""
        page = self.admin.get(f"/api/repositories/{self.repo}/jobs", params={"limit": 500}).json()["data"]
        ids = sorted((j["created_at"], j["id"]) for j in page if j["pipeline_id"] == self.data["id"])
        return [self.admin.get(f"/api/repositories/{self.repo}/jobs/{job_id}").json() for _, job_id in ids]

    def finished_jobs(self, count: int) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            jobs = self.jobs()
            return jobs if len(jobs) >= count else None

        jobs = wait_for(f"{count} jobs", enough)
        return [wait_job(self.admin, self.repo, j["id"]) for j in jobs]

    def document(self, path: Path) -> dict[str, Any] | None:
        params = {"source": str(path)}
        data = self.admin.get(f"/api/repositories/{self.repo}/documents", params=params).json()["data"]
        return data[0] if data else None

    def audit(self, action: str) -> list[dict[str, Any]]:
        params = {"resource_type": "pipeline", "resource_id": self.data["id"], "action": action}
        events: list[dict[str, Any]] = self.admin.get("/api/audit", params=params).json()["data"]
        return events


def create(client: httpx.Client, admin: httpx.Client, repo: str, body: dict[str, Any]) -> Pipeline:
    resp = client.post(f"/api/repositories/{repo}/pipelines", json=body)
    assert resp.status_code == 201, resp.text
    return Pipeline(admin, repo, resp.json())


def actions(job: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(i["action"], i["name"], i["status"]) for i in job["items"]]


def test_an_event_pipeline_runs_as_its_owner_and_stops_when_they_lose_the_rag_admin_right(
    lisa: LisaServer, admin: httpx.Client, ingest_root: Path
) -> None:
    repo = "pipeline-owner"
    fresh_repository(admin, repo)
    owner, granting = token(lisa, admin, "pl-owner", ["rag-admin"])
    token(lisa, admin, "pl-owner", [])  # still a user with a valid token, just without the group
    folder = ingest_root / "owner-events"
    folder.mkdir()
    body = {"name": "owned", "source": {"type": "folder", "path": str(folder)}, "trigger": {"type": "event"}}
    with owner:
        made = create(owner, admin, repo, body)
    assert made.data["created_by"] == "pl-owner"
    wait_for("the watcher's first sync", lambda: made.state()["last_run_at"])

    first = folder / "heron.txt"
    first.write_text("Herons stand still in shallow water and spear fish with their long beaks.")
    (job,) = made.finished_jobs(1)
    assert job["created_by"] == "pl-owner" and actions(job) == [("ingest", "heron.txt", "completed")]
    doc = made.document(first)
    assert doc is not None and doc["ingested_by"] == "pl-owner"

    assert admin.delete(f"/api/tokens/{granting}").status_code == 204  # the user no longer has rag-admin
    second = folder / "egret.txt"
    second.write_text("Egrets grow long white plumes in the breeding season.")
    wait_for("the watcher's sync to stop the pipeline", lambda: made.state()["enabled"] is False)
    stopped = made.state()
    reason = "stopped: its owner 'pl-owner' no longer has the RAG admin right"
    assert stopped["last_error"] == reason and stopped["created_by"] == "pl-owner"
    (event,) = made.audit("pipeline.stop")
    assert event["actor"] == "system" and event["before"]["enabled"] is True
    assert event["after"]["enabled"] is False and event["after"]["last_error"] == reason

    # An admin's run is a run as the owner too: refused, saying why, and nothing is read or queued.
    resp = admin.post(f"{made.url}/run")
    assert resp.status_code == 409 and reason in resp.json()["detail"], resp.text
    time.sleep(3)  # past the watcher's debounce and a poll: had anything still watched, it would have synced
    assert len(made.jobs()) == 1 and made.document(second) is None
    assert len(made.audit("pipeline.stop")) == 1  # stopping a stopped pipeline is no new event

    # An admin takes it over by enabling it: the runs now act as them.
    resp = admin.patch(made.url, json={"enabled": True})
    assert resp.status_code == 200, resp.text
    assert resp.json()["enabled"] is True and resp.json()["created_by"] == "admin" and resp.json()["last_error"] is None
    _, job2 = made.finished_jobs(2)
    assert job2["created_by"] == "admin" and actions(job2) == [("ingest", "egret.txt", "completed")]
    (update,) = made.audit("pipeline.update")
    assert update["actor"] == "admin" and update["before"]["created_by"] == "pl-owner"
    assert update["after"]["created_by"] == "admin"
    admin.delete(made.url)


@pytest.mark.parametrize("lost", ["repository", "collection"])
def test_a_pipeline_stops_when_its_owner_is_no_longer_in_the_allowed_groups(
    lisa: LisaServer, admin: httpx.Client, ingest_root: Path, lost: str
) -> None:
    repo = f"pipeline-owner-{lost}"
    fresh_repository(admin, repo, allowed_groups=["team-owl"] if lost == "repository" else [])
    if lost == "collection":
        resp = admin.post(f"/api/repositories/{repo}/collections", json={"id": "owls", "allowed_groups": ["team-owl"]})
        assert resp.status_code == 201, resp.text
    user = f"pl-{lost}-owner"
    owner, granting = token(lisa, admin, user, ["rag-admin", "team-owl"])
    folder = ingest_root / f"owner-{lost}"
    folder.mkdir()
    body = {"name": "owls", "source": {"type": "folder", "path": str(folder)}, "trigger": YEARLY,
            "collection_id": "owls" if lost == "collection" else "default"}  # fmt: skip
    (folder / "barn.txt").write_text("Barn owls hunt by sound alone, even in complete darkness.")
    with owner:
        made = create(owner, admin, repo, body)
        resp = owner.post(f"{made.url}/run")
        assert resp.status_code == 200 and resp.json() is not None, resp.text
        assert resp.json()["created_by"] == user
        assert wait_job(admin, repo, resp.json()["id"])["status"] == "completed"

    # The owner leaves the group: the token that granted it goes; a new one keeps them a RAG admin.
    assert admin.delete(f"/api/tokens/{granting}").status_code == 204
    token(lisa, admin, user, ["rag-admin"])
    (folder / "snowy.txt").write_text("Snowy owls hunt in daylight during the Arctic summer.")
    resp = admin.post(f"{made.url}/run")
    target = f"repository '{repo}'" if lost == "repository" else "collection 'owls'"
    reason = f"stopped: its owner '{user}' is no longer in the allowed_groups of {target}"
    assert resp.status_code == 409 and reason in resp.json()["detail"], resp.text
    state = made.state()
    assert state["enabled"] is False and state["last_error"] == reason
    assert len(made.jobs()) == 1 and made.document(folder / "snowy.txt") is None
    assert [e["actor"] for e in made.audit("pipeline.stop")] == ["system"]
    admin.delete(f"/api/repositories/{repo}")


def test_a_pipeline_stops_when_its_collection_no_longer_allows_its_chunking_and_enabling_checks_it(
    admin: httpx.Client, ingest_root: Path
) -> None:
    repo = "pipeline-owner-chunking"
    fresh_repository(admin, repo)
    folder = ingest_root / "owner-chunking"
    folder.mkdir()
    (folder / "tawny.txt").write_text("Tawny owls call to each other with the familiar twit-twoo duet.")
    body = {"name": "whole", "source": {"type": "folder", "path": str(folder)}, "trigger": YEARLY,
            "chunking": {"strategy": "none"}}  # fmt: skip
    made = create(admin, admin, repo, body)
    resp = admin.patch(f"/api/repositories/{repo}/collections/default", json={"allow_chunking_override": False})
    assert resp.status_code == 200, resp.text

    resp = admin.post(f"{made.url}/run")
    reason = "stopped: collection 'default' no longer allows overriding its chunking"
    assert resp.status_code == 409 and reason in resp.json()["detail"], resp.text
    assert made.state()["enabled"] is False and made.state()["last_error"] == reason and made.jobs() == []

    resp = admin.patch(made.url, json={"enabled": True})  # enabling checks the chunking it would run with
    assert resp.status_code == 400 and "does not allow overriding its chunking" in resp.text, resp.text
    assert made.state()["enabled"] is False
    resp = admin.patch(made.url, json={"enabled": True, "chunking": None})
    assert resp.status_code == 200 and resp.json()["enabled"] is True and resp.json()["chunking"] is None
    job = admin.post(f"{made.url}/run").json()
    assert job is not None and wait_job(admin, repo, job["id"])["status"] == "completed"
    admin.delete(f"/api/repositories/{repo}")
