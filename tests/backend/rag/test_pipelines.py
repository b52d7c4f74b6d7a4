"""Automatic ingestion pipelines against real servers: a LISA of their own (ingest roots, moto as AWS), moto_server
for S3 and SQS, and the session platform's MiniLM for embeddings."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import httpx
import pytest

from backend.db.engine import asyncpg_dsn
from backend.rag.pipeline_watchers import WATCH_LOCK, is_s3_notification
from backend.rag.pipelines import is_due, plan_sync
from tests.backend.rag.helpers import fresh_repository, search, stored_chunks, wait_job
from tests.support import LisaServer, Proc, start_lisa, wait_for

REPO = "pipelines"
EMBEDDINGS = "minilm-l6-v2"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
YEARLY = {"type": "schedule", "cron": "0 0 1 1 *"}  # never fires while the tests run: runs come from POST /run
WATCHER = "lisa-pipeline-watch:"


# --- the pure parts ----------------------------------------------------------------------------------------------
def test_plan_sync_acts_on_new_changed_and_vanished_objects_only() -> None:
    known = {"/r/same.txt": "3:1:aaa", "/r/touched.txt": "3:1:bbb", "/r/edited.txt": "3:1:ccc", "/r/gone.txt": "3:1:d"}
    seen = {"/r/same.txt": "3:1:aaa", "/r/touched.txt": "3:2:bbb", "/r/edited.txt": "4:2:eee", "/r/new.md": "5:2:f"}
    items, writes, gone = plan_sync(known, seen, auto_remove=True)
    assert [(i.action, i.source, i.name) for i in items] == [
        ("ingest", "/r/edited.txt", "edited.txt"),
        ("ingest", "/r/new.md", "new.md"),
        ("remove", "/r/gone.txt", "gone.txt"),
    ]
    assert writes == {"/r/touched.txt": "3:2:bbb", "/r/edited.txt": "4:2:eee", "/r/new.md": "5:2:f"}
    assert gone == ["/r/gone.txt"]
    kept, _, gone_too = plan_sync(known, seen, auto_remove=False)
    assert [i.action for i in kept] == ["ingest", "ingest"] and gone_too == ["/r/gone.txt"]
    assert plan_sync(seen, seen, auto_remove=True) == ([], {}, [])
    s3_items, _, _ = plan_sync({"s3://b/k.txt": "etag1"}, {"s3://b/k.txt": "etag2"}, auto_remove=True)
    assert [(i.action, i.name) for i in s3_items] == [("ingest", "k.txt")]


def test_is_due_only_after_a_fire_time_since_the_last_run() -> None:
    last = datetime(2026, 3, 1, 12, 3, 30, tzinfo=UTC)
    assert not is_due("*/5 * * * *", last, datetime(2026, 3, 1, 12, 4, 59, tzinfo=UTC))
    assert is_due("*/5 * * * *", last, datetime(2026, 3, 1, 12, 5, 0, tzinfo=UTC))
    assert not is_due("0 0 1 1 *", last, datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert is_due("0 0 1 1 *", last, datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC))


def test_only_s3_notifications_count_as_changes() -> None:
    record = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}
    assert is_s3_notification(json.dumps(record))
    assert is_s3_notification(json.dumps({"Type": "Notification", "Message": json.dumps(record)}))  # through SNS
    assert not is_s3_notification(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}))
    assert not is_s3_notification("not json")
    assert not is_s3_notification(json.dumps({"Records": [{"eventSource": "aws:sqs"}]}))


# --- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pipeline-root").resolve()


@pytest.fixture(scope="module")
def server(
    root: Path, moto_server: Proc, admin: httpx.Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LisaServer]:
    """LISA reading folders under ``root`` and S3/SQS from moto, with the session platform's MiniLM registered."""
    env = {
        "LISA_RAG_INGEST_ROOTS": json.dumps([str(root)]),
        "LISA_AWS_ENDPOINT_URL": moto_server.url,
        "LISA_RAG_POLL_SECONDS": "1",
        "LISA_EGRESS_S3_BUCKETS": "lisa-*",  # the test buckets; S3 sources need their bucket allowed
        **AWS_ENV,
    }
    lisa = start_lisa(tmp_path_factory.mktemp("pipelines-lisa") / "data", local_models=False, env=env)
    minilm = admin.get(f"/api/models/{EMBEDDINGS}").json()
    model = {"id": EMBEDDINGS, "type": "embedding", "hosting": "internal", "base_url": minilm["base_url"]}
    with lisa.client() as c:
        assert c.post("/api/models", json=model).status_code == 201
    yield lisa
    lisa.proc.stop()


@pytest.fixture(scope="module")
def client(server: LisaServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        fresh_repository(c, REPO)
        yield c


@pytest.fixture(scope="module")
def s3(moto_server: Proc) -> Any:
    return boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1", **_keys())


@pytest.fixture(scope="module")
def sqs(moto_server: Proc) -> Any:
    return boto3.client("sqs", endpoint_url=moto_server.url, region_name="us-east-1", **_keys())


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


# --- helpers -----------------------------------------------------------------------------------------------------
def create(client: httpx.Client, body: dict[str, Any], repo: str = REPO) -> dict[str, Any]:
    resp = client.post(f"/api/repositories/{repo}/pipelines", json=body)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = resp.json()
    return created


def run(client: httpx.Client, pipeline_id: str) -> dict[str, Any] | None:
    resp = client.post(f"/api/repositories/{REPO}/pipelines/{pipeline_id}/run")
    assert resp.status_code == 200, resp.text
    job: dict[str, Any] | None = resp.json()
    return job


def pipeline(client: httpx.Client, pipeline_id: str) -> dict[str, Any]:
    resp = client.get(f"/api/repositories/{REPO}/pipelines/{pipeline_id}")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def pipeline_jobs(client: httpx.Client, pipeline_id: str) -> list[dict[str, Any]]:
    """The pipeline's jobs, oldest first, each with its items."""
    page = client.get(f"/api/repositories/{REPO}/jobs", params={"limit": 500}).json()["data"]
    ids = sorted((j["created_at"], j["id"]) for j in page if j["pipeline_id"] == pipeline_id)
    return [client.get(f"/api/repositories/{REPO}/jobs/{job_id}").json() for _, job_id in ids]


def finished_jobs(client: httpx.Client, pipeline_id: str, count: int, timeout: float = 90) -> list[dict[str, Any]]:
    """Waits for the pipeline's ``count``-th job and for all of them to end."""

    def enough() -> list[dict[str, Any]] | None:
        jobs = pipeline_jobs(client, pipeline_id)
        return jobs if len(jobs) >= count else None

    jobs = wait_for(f"{count} jobs of {pipeline_id}", enough, timeout)
    return [wait_job(client, REPO, j["id"]) for j in jobs]


def document(client: httpx.Client, source: str) -> dict[str, Any] | None:
    data = client.get(f"/api/repositories/{REPO}/documents", params={"source": source}).json()["data"]
    assert len(data) <= 1, data
    return data[0] if data else None


def actions(job: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(i["action"], i["name"], i["status"]) for i in job["items"]]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- folders -----------------------------------------------------------------------------------------------------
def test_folder_event_pipeline_follows_each_add_change_and_delete_once(
    client: httpx.Client, server: LisaServer, root: Path
) -> None:
    folder = root / "events"
    (folder / "sub").mkdir(parents=True)
    made = create(
        client, {"name": "events", "source": {"type": "folder", "path": str(folder)}, "trigger": {"type": "event"}}
    )
    assert made["source"] == {"type": "folder", "path": str(folder)} and made["auto_remove"] and made["enabled"]
    wait_for("the watcher's first sync", lambda: pipeline(client, made["id"])["last_run_at"])

    note = folder / "sub" / "lighthouse.md"
    first = "# Lighthouse\n\nThe keeper polishes the brass lens of the lighthouse every Tuesday at dawn.\n"
    note.write_text(first)
    (job1,) = finished_jobs(client, made["id"], 1)
    assert (
        job1["status"] == "completed"
        and job1["kind"] == "pipeline"
        and actions(job1) == [("ingest", "lighthouse.md", "completed")]
    )
    doc = document(client, str(note))
    assert doc is not None and doc["sha256"] == sha(first) and doc["job_id"] == job1["id"]
    hits = search(client, REPO, "who polishes the lens of the lighthouse", top_k=1)
    assert hits[0]["document_id"] == doc["id"] and "brass lens" in hits[0]["text"]

    second = "# Lighthouse\n\nThe lighthouse was automated in 1990, and a solar panel now powers its beacon.\n"
    note.write_text(second)
    job1, job2 = finished_jobs(client, made["id"], 2)
    assert actions(job2) == [("ingest", "lighthouse.md", "completed")]
    changed = document(client, str(note))
    assert changed is not None and changed["id"] == doc["id"] and changed["sha256"] == sha(second)
    assert stored_chunks(server.database_url, REPO)[doc["id"]] == changed["chunk_count"] == 1
    texts = [h["text"] for h in search(client, REPO, "what powers the lighthouse beacon", source=str(note), top_k=5)]
    assert len(texts) == 1 and "solar panel" in texts[0] and "brass" not in texts[0]

    note.unlink()
    *_, job3 = finished_jobs(client, made["id"], 3)
    assert actions(job3) == [("remove", "lighthouse.md", "completed")]
    assert document(client, str(note)) is None
    assert client.get(f"/api/repositories/{REPO}/documents/{doc['id']}").status_code == 404
    assert doc["id"] not in stored_chunks(server.database_url, REPO)

    assert run(client, made["id"]) is None and run(client, made["id"]) is None
    time.sleep(3)  # three poll periods of the watcher: still nothing new to do
    assert len(pipeline_jobs(client, made["id"])) == 3
    assert pipeline(client, made["id"])["last_error"] is None


def test_disabling_stops_the_watcher_and_enabling_catches_up(client: httpx.Client, root: Path) -> None:
    folder = root / "paused"
    folder.mkdir()
    made = create(
        client, {"name": "paused", "source": {"type": "folder", "path": str(folder)}, "trigger": {"type": "event"}}
    )
    wait_for("the watcher's first sync", lambda: pipeline(client, made["id"])["last_run_at"])
    url = f"/api/repositories/{REPO}/pipelines/{made['id']}"
    assert client.patch(url, json={"enabled": False}).json()["enabled"] is False
    time.sleep(1.5)  # the watcher stops within a poll period
    last_run = pipeline(client, made["id"])["last_run_at"]
    (folder / "glacier.txt").write_text("Glaciers carve U-shaped valleys as they grind slowly downhill over centuries.")
    time.sleep(3)
    assert pipeline_jobs(client, made["id"]) == [] and pipeline(client, made["id"])["last_run_at"] == last_run

    assert client.patch(url, json={"enabled": True}).json()["enabled"] is True
    (job,) = finished_jobs(client, made["id"], 1)
    assert actions(job) == [("ingest", "glacier.txt", "completed")]


def test_auto_remove_false_keeps_documents_of_deleted_files(client: httpx.Client, root: Path) -> None:
    folder = root / "keep"
    folder.mkdir()
    body = {"name": "keep", "source": {"type": "folder", "path": str(folder)}, "trigger": YEARLY, "auto_remove": False,
            "tags": ["archive"], "chunking": {"strategy": "none"}}  # fmt: skip
    made = create(client, body)
    assert made["chunking"] == {"strategy": "none", "size": None, "overlap": None} and made["tags"] == ["archive"]
    path = folder / "comet.txt"
    path.write_text("A comet's tail always points away from the sun, pushed by the solar wind.")
    job = run(client, made["id"])
    assert job is not None
    assert wait_job(client, REPO, job["id"])["status"] == "completed"
    doc = document(client, str(path))
    assert doc is not None and doc["tags"] == ["archive"] and doc["chunking"]["strategy"] == "none"

    path.unlink()
    assert run(client, made["id"]) is None  # seen to vanish, but nothing to do
    assert client.get(f"/api/repositories/{REPO}/documents/{doc['id']}").status_code == 200
    assert (
        search(client, REPO, "which way does a comet's tail point", source=str(path), top_k=1)[0]["document_id"]
        == doc["id"]
    )


def test_concurrent_runs_create_exactly_one_job(client: httpx.Client, root: Path) -> None:
    folder = root / "race"
    folder.mkdir()
    made = create(client, {"name": "race", "source": {"type": "folder", "path": str(folder)}, "trigger": YEARLY})
    for n, text in enumerate(
        ["Owls turn their heads 270 degrees.", "Bees dance to point at flowers.", "Octopuses have three hearts."]
    ):
        (folder / f"fact-{n}.txt").write_text(text)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(client, made["id"]), range(4)))
    jobs = [r for r in results if r is not None]
    assert len(jobs) == 1, results
    assert sorted(i["name"] for i in jobs[0]["items"]) == ["fact-0.txt", "fact-1.txt", "fact-2.txt"]
    assert wait_job(client, REPO, jobs[0]["id"])["documents_done"] == 3
    assert [j["id"] for j in pipeline_jobs(client, made["id"])] == [jobs[0]["id"]]


def test_changing_the_source_removes_the_old_documents_and_ingests_the_new(client: httpx.Client, root: Path) -> None:
    old, new = root / "move-old", root / "move-new"
    old.mkdir()
    new.mkdir()
    (old / "tea.txt").write_text("Green tea is steamed or pan-fired soon after picking to stop oxidation.")
    (new / "coffee.txt").write_text("Coffee cherries are dried or washed before the beans are roasted.")
    made = create(client, {"name": "move", "source": {"type": "folder", "path": str(old)}, "trigger": YEARLY})
    first = run(client, made["id"])
    assert first is not None and wait_job(client, REPO, first["id"])["status"] == "completed"
    url = f"/api/repositories/{REPO}/pipelines/{made['id']}"
    assert client.patch(url, json={"source": {"type": "folder", "path": str(new)}}).status_code == 200
    job = run(client, made["id"])
    assert job is not None
    assert sorted(actions(wait_job(client, REPO, job["id"]))) == [
        ("ingest", "coffee.txt", "completed"),
        ("remove", "tea.txt", "completed"),
    ]
    assert document(client, str(old / "tea.txt")) is None and document(client, str(new / "coffee.txt")) is not None


def watch_lock_holders(database_url: str, pipeline_id: str) -> list[str]:
    """application_name of the connections holding the pipeline's watch lock (``lisa-pipeline-watch:<pid>``)."""

    async def read() -> list[str]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            rows = await conn.fetch(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
                "AND l.classid = $1::int4::oid AND l.objid = hashtext($2)::oid",
                WATCH_LOCK,
                pipeline_id,
            )
            return [str(r["application_name"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(read())


def test_two_replicas_watch_a_pipeline_once_and_the_survivor_takes_over(
    client: httpx.Client, server: LisaServer, root: Path, moto_server: Proc, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = {
        "LISA_RAG_INGEST_ROOTS": json.dumps([str(root)]),
        "LISA_AWS_ENDPOINT_URL": moto_server.url,
        "LISA_RAG_POLL_SECONDS": "1",
        "LISA_BOOTSTRAP_ADMIN": "false",
        **AWS_ENV,
    }
    data_dir = tmp_path_factory.mktemp("pipelines-peer") / "data"
    peer = start_lisa(data_dir, local_models=False, database_url=server.database_url, token=server.token, env=env)
    try:
        folder = root / "replicas"
        folder.mkdir()
        body = {"name": "replicas", "source": {"type": "folder", "path": str(folder)}, "trigger": {"type": "event"}}
        with peer.client() as via_peer:
            made = create(via_peer, body)
        wait_for("the first sync", lambda: pipeline(client, made["id"])["last_run_at"])
        time.sleep(2)  # both processes have tried to take the watch; the peer, told first, usually won
        holders = watch_lock_holders(server.database_url, made["id"])
        assert len(holders) == 1 and holders[0] in (
            f"{WATCHER}{peer.proc.popen.pid}",
            f"{WATCHER}{server.proc.popen.pid}",
        )
        print(
            "watch lock held first by", "the peer" if holders[0].endswith(f":{peer.proc.popen.pid}") else "the server"
        )
        (folder / "reef.txt").write_text("Coral reefs are built by colonies of tiny animals called polyps.")
        (job,) = finished_jobs(client, made["id"], 1)
        assert actions(job) == [("ingest", "reef.txt", "completed")]
    finally:
        peer.proc.stop()
    survivor = [f"{WATCHER}{server.proc.popen.pid}"]
    wait_for("the surviving process to watch", lambda: watch_lock_holders(server.database_url, made["id"]) == survivor)
    (folder / "kelp.txt").write_text("Kelp forests grow in cold, nutrient-rich coastal water.")
    _, job2 = finished_jobs(client, made["id"], 2)
    assert actions(job2) == [("ingest", "kelp.txt", "completed")]
    time.sleep(2)
    assert len(pipeline_jobs(client, made["id"])) == 2


# --- S3 ----------------------------------------------------------------------------------------------------------
def test_s3_event_pipeline_syncs_on_sqs_notifications_and_drains_the_queue(
    client: httpx.Client, s3: Any, sqs: Any
) -> None:
    """moto_server delivers S3 event notifications (ObjectCreated:Put, ObjectRemoved:Delete) to an SQS queue
    configured on the bucket, as AWS does; the pipeline reacts to them (it does not poll when it has a queue)."""
    bucket = "lisa-pipeline-events"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName="lisa-pipeline-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]
        },
    )
    source = {"type": "s3", "bucket": bucket, "prefix": "docs/", "queue_url": queue_url}
    made = create(client, {"name": "s3-events", "source": source, "trigger": {"type": "event"}})
    wait_for("the watcher's first sync", lambda: pipeline(client, made["id"])["last_run_at"])

    text = "Spring tides happen when the sun and moon line up, at new and full moon."
    s3.put_object(Bucket=bucket, Key="docs/tides.txt", Body=text.encode())
    (job1,) = finished_jobs(client, made["id"], 1)
    assert actions(job1) == [("ingest", "tides.txt", "completed")]
    uri = f"s3://{bucket}/docs/tides.txt"
    doc = document(client, uri)
    assert doc is not None and doc["sha256"] == sha(text)
    assert search(client, REPO, "when do spring tides happen", source=uri, top_k=1)[0]["document_id"] == doc["id"]

    def drained() -> bool:
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"

    wait_for("the queue to be emptied", drained, timeout=30)

    s3.delete_object(Bucket=bucket, Key="docs/tides.txt")
    *_, job2 = finished_jobs(client, made["id"], 2)
    assert actions(job2) == [("remove", "tides.txt", "completed")] and document(client, uri) is None
    wait_for("the queue to be emptied again", drained, timeout=30)
    assert len(pipeline_jobs(client, made["id"])) == 2


def test_s3_schedule_pipeline_runs_on_request(client: httpx.Client, s3: Any) -> None:
    bucket = "lisa-pipeline-schedule"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="kb/aurora.txt", Body=b"Auroras glow when solar particles strike the upper air.")
    s3.put_object(Bucket=bucket, Key="kb/deep/geyser.md", Body=b"# Geysers\n\nUnderground water boils and erupts.")
    s3.put_object(Bucket=bucket, Key="kb/photo.png", Body=b"\x89PNG not a supported type")
    s3.put_object(Bucket=bucket, Key="elsewhere/skip.txt", Body=b"Outside the prefix.")
    source = {"type": "s3", "bucket": bucket, "prefix": "kb/"}
    made = create(
        client, {"name": "s3-schedule", "source": source, "trigger": {"type": "schedule", "cron": "0 0 1 1 *"}}
    )

    job = run(client, made["id"])
    assert job is not None and job["pipeline_id"] == made["id"]
    assert sorted(actions(wait_job(client, REPO, job["id"]))) == [
        ("ingest", "aurora.txt", "completed"),
        ("ingest", "geyser.md", "completed"),
    ]
    assert run(client, made["id"]) is None

    s3.put_object(Bucket=bucket, Key="kb/aurora.txt", Body=b"Auroras are mostly green, from oxygen about 100 km up.")
    s3.delete_object(Bucket=bucket, Key="kb/deep/geyser.md")
    job = run(client, made["id"])
    assert job is not None
    assert sorted(actions(wait_job(client, REPO, job["id"]))) == [
        ("ingest", "aurora.txt", "completed"),
        ("remove", "geyser.md", "completed"),
    ]
    aurora = document(client, f"s3://{bucket}/kb/aurora.txt")
    assert aurora is not None and aurora["sha256"] == sha("Auroras are mostly green, from oxygen about 100 km up.")
    assert document(client, f"s3://{bucket}/kb/deep/geyser.md") is None
    assert run(client, made["id"]) is None
    state = pipeline(client, made["id"])
    assert state["last_error"] is None and state["last_run_at"] is not None

    missing = create(
        client, {"name": "no-bucket", "source": {"type": "s3", "bucket": "lisa-no-such-bucket"}, "trigger": YEARLY}
    )
    resp = client.post(f"/api/repositories/{REPO}/pipelines/{missing['id']}/run")
    assert resp.status_code == 502 and "NoSuchBucket" in resp.json()["detail"]
    assert "NoSuchBucket" in pipeline(client, missing["id"])["last_error"]


def test_schedule_pipeline_runs_from_the_worker_tick(client: httpx.Client, s3: Any) -> None:
    """The worker's once-a-minute tick runs a pipeline whose cron fired since its last run (here: every minute)."""
    bucket = "lisa-pipeline-tick"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="volcano.txt", Body=b"Shield volcanoes are built from runny basalt lava flows.")
    made = create(
        client,
        {
            "name": "tick",
            "source": {"type": "s3", "bucket": bucket},
            "trigger": {"type": "schedule", "cron": "* * * * *"},
        },
    )
    (job,) = finished_jobs(client, made["id"], 1, timeout=150)
    assert actions(job) == [("ingest", "volcano.txt", "completed")]
    assert pipeline(client, made["id"])["last_run_at"] is not None


def test_a_pipeline_whose_collection_was_deleted_says_so_and_can_be_deleted(client: httpx.Client, root: Path) -> None:
    assert client.post(f"/api/repositories/{REPO}/collections", json={"id": "short-lived"}).status_code == 201
    folder = root / "orphan"
    folder.mkdir()
    body = {
        "name": "orphan",
        "collection_id": "short-lived",
        "source": {"type": "folder", "path": str(folder)},
        "trigger": YEARLY,
    }
    made = create(client, body)
    assert client.delete(f"/api/repositories/{REPO}/collections/short-lived").status_code == 204
    resp = client.post(f"/api/repositories/{REPO}/pipelines/{made['id']}/run")
    assert resp.status_code == 404 and "collection 'short-lived'" in resp.json()["detail"]
    assert "is gone" in pipeline(client, made["id"])["last_error"]
    assert client.delete(f"/api/repositories/{REPO}/pipelines/{made['id']}").status_code == 204


# --- validation and access ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "status", "fragment"),
    [
        ("outside_roots", 403, "outside the folders"),
        ("relative", 400, "must be absolute"),
        ("missing_folder", 400, "no such file or folder"),
        ("a_file", 400, "not a folder"),
        ("bad_cron", 422, "cron"),
        ("four_field_cron", 422, "cron"),
        ("unknown_collection", 404, "collection 'nope' not found"),
        ("chunking_refused", 400, "does not allow overriding its chunking"),
        ("unknown_field", 422, "Extra inputs"),
        ("unknown_source_type", 422, "type"),
        ("unknown_repository", 404, "repository 'no-such-repo' not found"),
    ],
)
def test_bad_input_is_refused_and_creates_nothing(
    client: httpx.Client, root: Path, tmp_path: Path, case: str, status: int, fragment: str
) -> None:
    (root / "valid").mkdir(exist_ok=True)
    (root / "plain.txt").write_text("a file, not a folder")
    if case == "chunking_refused" and client.get(f"/api/repositories/{REPO}/collections/fixed").status_code == 404:
        resp = client.post(
            f"/api/repositories/{REPO}/collections", json={"id": "fixed", "allow_chunking_override": False}
        )
        assert resp.status_code == 201, resp.text
    body: dict[str, Any] = {"name": case, "source": {"type": "folder", "path": str(root / "valid")}, "trigger": YEARLY}
    repo = REPO
    match case:
        case "outside_roots":
            body["source"]["path"] = str(tmp_path)
        case "relative":
            body["source"]["path"] = "valid"
        case "missing_folder":
            body["source"]["path"] = str(root / "nowhere")
        case "a_file":
            body["source"]["path"] = str(root / "plain.txt")
        case "bad_cron":
            body["trigger"] = {"type": "schedule", "cron": "61 * * * *"}
        case "four_field_cron":
            body["trigger"] = {"type": "schedule", "cron": "* * * *"}
        case "unknown_collection":
            body["collection_id"] = "nope"
        case "chunking_refused":
            body |= {"collection_id": "fixed", "chunking": {"strategy": "none"}}
        case "unknown_field":
            body["schedule"] = "daily"
        case "unknown_source_type":
            body["source"] = {"type": "ftp", "path": "/x"}
        case "unknown_repository":
            repo = "no-such-repo"
    before = {p["id"] for p in client.get(f"/api/repositories/{REPO}/pipelines").json()["data"]}
    resp = client.post(f"/api/repositories/{repo}/pipelines", json=body)
    assert resp.status_code == status, resp.text
    assert fragment in resp.text
    assert {p["id"] for p in client.get(f"/api/repositories/{REPO}/pipelines").json()["data"]} == before


def test_management_needs_a_rag_admin_and_a_visible_repository_and_is_audited(
    client: httpx.Client, server: LisaServer, root: Path
) -> None:
    def token(username: str, groups: list[str]) -> dict[str, str]:
        resp = client.post("/api/tokens", json={"name": username, "username": username, "groups": groups})
        assert resp.status_code == 201, resp.text
        return {"Authorization": f"Bearer {resp.json()['token']}"}

    user, rag_admin = token("pipe-user", []), token("pipe-rag-admin", ["rag-admin"])
    folder = root / "authz"
    folder.mkdir()
    body = {"name": "authz", "source": {"type": "folder", "path": str(folder)}, "trigger": YEARLY}
    base = f"/api/repositories/{REPO}/pipelines"
    assert client.post(base, json=body, headers=user).status_code == 403
    made = client.post(base, json=body, headers=rag_admin)
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    assert made.json()["created_by"] == "pipe-rag-admin"
    for method, url in [("GET", base), ("GET", f"{base}/{pid}"), ("PATCH", f"{base}/{pid}"), ("POST", f"{base}/{pid}/run"),
                        ("DELETE", f"{base}/{pid}")]:  # fmt: skip
        resp = client.request(method, url, json={} if method == "PATCH" else None, headers=user)
        assert resp.status_code == 403, (method, url, resp.text)
    assert pid in {p["id"] for p in client.get(base, headers=rag_admin).json()["data"]}

    fresh_repository(client, "pipelines-hidden", allowed_groups=["team-x"])
    assert client.get("/api/repositories/pipelines-hidden/pipelines", headers=rag_admin).status_code == 404
    hidden = {**body, "name": "hidden"}
    assert (
        client.post("/api/repositories/pipelines-hidden/pipelines", json=hidden, headers=rag_admin).status_code == 404
    )
    assert client.get("/api/repositories/pipelines-hidden/pipelines").json()["data"] == []
    client.delete("/api/repositories/pipelines-hidden")

    renamed = client.patch(f"{base}/{pid}", json={"name": "renamed", "tags": ["x"]}, headers=rag_admin)
    assert renamed.status_code == 200 and renamed.json()["name"] == "renamed" and renamed.json()["tags"] == ["x"]
    assert client.patch(f"{base}/{pid}", json={"enabled": None}).status_code == 400
    (folder / "ant.txt").write_text("Ants lay pheromone trails that other ants follow to food.")
    job = client.post(f"{base}/{pid}/run", headers=rag_admin).json()
    assert job is not None and wait_job(client, REPO, job["id"])["status"] == "completed"
    assert client.delete(f"{base}/{pid}", headers=rag_admin).status_code == 204
    assert client.get(f"{base}/{pid}").status_code == 404
    assert client.post(f"{base}/{pid}/run").status_code == 404
    assert document(client, str(folder / "ant.txt")) is not None  # the documents stay in their collection

    events = client.get("/api/audit", params={"resource_type": "pipeline", "resource_id": pid}).json()["data"]
    assert {e["action"] for e in events} == {"pipeline.create", "pipeline.update", "pipeline.run", "pipeline.delete"}
    assert {e["actor"] for e in events} == {"pipe-rag-admin"}
