"""The egress guard through the running server: refused URLs, hosts and buckets are a 400 naming the host and why,
with nothing written; a server started without loopback refuses loopback at registration and at connect time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.net.listener import Listener
from tests.backend.rag.helpers import fresh_repository
from tests.support import LisaServer, Proc, start_lisa

MESSAGES = [{"role": "user", "content": "hi"}]


def model(model_id: str, base_url: str, **extra: object) -> dict[str, object]:
    return {"id": model_id, "type": "textgen", "hosting": "internal", "base_url": base_url, **extra}


def assert_refused(resp: httpx.Response, *fragments: str) -> str:
    assert resp.status_code == 400, resp.text
    detail: str = resp.json()["detail"]
    for fragment in fragments:
        assert fragment in detail, detail
    return detail


@pytest.fixture(scope="module")
def strict(lisa: LisaServer, session_tmp: Path) -> Iterator[LisaServer]:
    """A second backend on the session's database whose egress policy allows no loopback: only 10.1.0.0/16 and one
    documentation address besides the public Internet. It runs no RAG worker (it must not take the session's jobs)."""
    env = {
        "LISA_BOOTSTRAP_ADMIN": "false",
        "LISA_RAG_WORKER": "false",
        "LISA_EGRESS_ALLOW": "10.1.0.0/16,192.0.2.7",
    }
    server = start_lisa(
        session_tmp / "egress-strict", local_models=False, database_url=lisa.database_url, token=lisa.token, env=env
    )
    yield server
    server.proc.stop()


@pytest.fixture(scope="module")
def strict_admin(strict: LisaServer) -> Iterator[httpx.Client]:
    with strict.client() as client:
        yield client


# --- the default policy: public and loopback allowed, nothing else ----------------------------------------------
@pytest.mark.parametrize(
    ("base_url", "fragments"),
    [
        ("http://169.254.169.254/latest/", ["169.254.169.254 is link-local (cloud metadata); not allowed"]),
        ("http://169.254.170.2/v2/credentials", ["169.254.170.2 is link-local (cloud metadata)"]),
        ("http://10.0.0.1:8000/v1", ["10.0.0.1 is private; not allowed", "LISA_EGRESS_ALLOW"]),
        ("http://[::ffff:169.254.169.254]/v1", ["(169.254.169.254) is link-local (cloud metadata)"]),
        ("http://[fd00:ec2::254]/v1", ["fd00:ec2::254 is cloud metadata"]),
        ("http://2852039166/v1", ["169.254.169.254 is link-local (cloud metadata)"]),
        ("http://0251.0376.0251.0376/v1", ["169.254.169.254 is link-local (cloud metadata)"]),
        ("http://0xA9FEA9FE/v1", ["169.254.169.254 is link-local (cloud metadata)"]),
        ("http://100.64.0.1/v1", ["100.64.0.1 is shared address space"]),
        ("http://0.0.0.0:8000/v1", ["0.0.0.0 is unspecified"]),
        ("http://[fe80::1]:8000/v1", ["fe80::1 is link-local"]),
        ("http://no-such-host.invalid/v1", ["host name 'no-such-host.invalid' does not resolve"]),
    ],
)
def test_models_at_refused_addresses_are_400_and_not_written(
    admin: httpx.Client, base_url: str, fragments: list[str]
) -> None:
    admin.delete("/api/models/egress-refused")
    resp = admin.post("/api/models", json=model("egress-refused", base_url))
    detail = assert_refused(resp, "model 'egress-refused': base_url: ", *fragments)
    assert admin.get("/api/models/egress-refused").status_code == 404, detail


def test_a_third_party_api_base_and_an_update_pass_the_guard_too(admin: httpx.Client, faulty_upstream: Proc) -> None:
    third_party = {
        "id": "egress-provider",
        "type": "textgen",
        "hosting": "third_party",
        "provider_model": "openai/gpt-4o-mini",
        "base_url": "http://169.254.169.254/v1",
        "api_key": "sk-egress-test",
    }
    admin.delete("/api/models/egress-provider")
    assert_refused(admin.post("/api/models", json=third_party), "169.254.169.254 is link-local (cloud metadata)")
    assert admin.get("/api/models/egress-provider").status_code == 404

    allowed = faulty_upstream.url + "/v1"
    admin.delete("/api/models/egress-ok")
    assert admin.post("/api/models", json=model("egress-ok", allowed, upstream_model="ok")).status_code == 201
    moved = admin.patch("/api/models/egress-ok", json={"base_url": "http://192.168.1.10:8000/v1"})
    assert_refused(moved, "192.168.1.10 is private")
    assert admin.get("/api/models/egress-ok").json()["base_url"] == allowed  # untouched
    chat = admin.post("/v1/chat/completions", json={"model": "egress-ok", "messages": MESSAGES})
    assert chat.status_code == 200, chat.text  # an allowed address works


def test_repository_stores_at_refused_addresses_are_400_and_not_written(admin: httpx.Client) -> None:
    admin.delete("/api/repositories/egress-os")
    body = {"id": "egress-os", "type": "opensearch", "opensearch": {"endpoint": "http://169.254.169.254:9200"}}
    assert_refused(admin.post("/api/repositories", json=body), "opensearch endpoint: 169.254.169.254 is link-local")
    assert admin.get("/api/repositories/egress-os").status_code == 404

    admin.delete("/api/repositories/egress-pg")
    url = "postgresql://lisa:pg-s3cr3t@10.0.0.1:5432/vectors"
    resp = admin.post("/api/repositories", json={"id": "egress-pg", "pgvector": {"database_url": url}})
    detail = assert_refused(resp, "pgvector database_url: 10.0.0.1 is private")
    assert "pg-s3cr3t" not in detail
    assert admin.get("/api/repositories/egress-pg").status_code == 404


def test_s3_sources_need_an_allowed_bucket(admin: httpx.Client) -> None:
    """The session's server allows no bucket (LISA_EGRESS_S3_BUCKETS is empty by default)."""
    repo = "egress-s3"
    fresh_repository(admin, repo)
    ingest = admin.post(
        f"/api/repositories/{repo}/collections/default/ingest", json={"sources": ["s3://someone-elses-bucket/a.txt"]}
    )
    assert_refused(ingest, "S3 bucket 'someone-elses-bucket' is not allowed", "LISA_EGRESS_S3_BUCKETS")
    assert admin.get(f"/api/repositories/{repo}/jobs").json()["data"] == []
    pipeline = {
        "name": "weights",
        "source": {"type": "s3", "bucket": "model-weights", "prefix": "x/"},
        "trigger": {"type": "schedule", "cron": "0 0 1 1 *"},
    }
    assert_refused(admin.post(f"/api/repositories/{repo}/pipelines", json=pipeline), "S3 bucket 'model-weights'")
    assert admin.get(f"/api/repositories/{repo}/pipelines").json()["data"] == []
    admin.delete(f"/api/repositories/{repo}")


def test_where_models_and_stores_run_is_shown_to_admins_only(admin: httpx.Client, lisa: LisaServer) -> None:
    admin.delete("/api/models/egress-hidden")
    body = model("egress-hidden", "http://127.0.0.1:9/v1", upstream_model="/models/internal-name.gguf", api_key="k")
    assert admin.post("/api/models", json=body).status_code == 201
    token = admin.post("/api/tokens", json={"name": "t", "username": "uma", "groups": ["staff"]}).json()["token"]
    hidden = ("base_url", "provider_model", "upstream_model", "has_api_key", "managed_by")
    with lisa.client(token) as user:
        one = user.get("/api/models/egress-hidden").json()
        listed = {m["id"]: m for m in user.get("/api/models", params={"limit": 500}).json()["data"]}
        for shown in (one, listed["egress-hidden"], listed["gemma3-270m"]):
            assert all(shown[field] is None for field in hidden), shown
            assert "127.0.0.1" not in json.dumps(shown)
        assert one["id"] == "egress-hidden" and one["type"] == "textgen" and one["status"] == "InService"
        as_admin = admin.get("/api/models/egress-hidden").json()
        assert as_admin["base_url"] == "http://127.0.0.1:9/v1" and as_admin["has_api_key"] is True
        assert as_admin["upstream_model"] == "/models/internal-name.gguf"

        # A repository's store options (an OpenSearch endpoint, a user name) likewise.
        fresh_repository(admin, "egress-ext", pgvector={"database_url": lisa.database_url})
        assert admin.get("/api/repositories/egress-ext").json()["options"] == {"external_database": True}
        assert user.get("/api/repositories/egress-ext").json()["options"] == {}
    admin.delete("/api/repositories/egress-ext")


# --- a server whose policy allows no loopback -------------------------------------------------------------------
def test_a_strict_server_refuses_loopback_at_registration(strict_admin: httpx.Client, listener: Listener) -> None:
    for base_url, fragments in (
        (f"http://127.0.0.1:{listener.port}/v1", ["127.0.0.1 is loopback; not allowed"]),
        (f"http://localhost:{listener.port}/v1", ["localhost resolves to 127.0.0.1, which is loopback"]),
        (f"http://[::1]:{listener.port}/v1", ["::1 is loopback"]),
        ("http://10.2.0.1/v1", ["10.2.0.1 is private"]),
    ):
        assert_refused(strict_admin.post("/api/models", json=model("egress-strict", base_url)), *fragments)
        assert strict_admin.get("/api/models/egress-strict").status_code == 404
    endpoint = {"endpoint": f"http://127.0.0.1:{listener.port}"}
    opensearch = strict_admin.post(
        "/api/repositories", json={"id": "egress-os2", "type": "opensearch", "opensearch": endpoint}
    )
    assert_refused(opensearch, "opensearch endpoint: 127.0.0.1 is loopback")
    database = {"database_url": f"postgresql://lisa:pw@127.0.0.1:{listener.port}/db"}
    assert_refused(strict_admin.post("/api/repositories", json={"id": "egress-pg2", "pgvector": database}), "loopback")
    assert listener.accepted == 0  # refused before any connection

    for allowed in ("http://10.1.2.3:8000/v1", "http://192.0.2.7/v1"):  # the networks this server allows
        strict_admin.delete("/api/models/egress-allowed")
        created = strict_admin.post("/api/models", json=model("egress-allowed", allowed))
        assert created.status_code == 201, created.text
    strict_admin.delete("/api/models/egress-allowed")


def test_a_strict_server_refuses_at_connect_time_what_another_registered(
    admin: httpx.Client, strict_admin: httpx.Client, listener: Listener
) -> None:
    """The model was registered through the session's server (loopback allowed there), by a name; the strict server
    checks the address the name resolves to when it connects, as it would after a DNS change, and never connects.
    Its embedder does the same for the session's local embedding model."""
    admin.delete("/api/models/egress-rebind")
    registered = admin.post("/api/models", json=model("egress-rebind", f"http://localhost:{listener.port}/v1"))
    assert registered.status_code == 201, registered.text
    deadline = time.monotonic() + 10  # the strict server learns of the model through the change feed
    while "egress-rebind" not in {m["id"] for m in strict_admin.get("/v1/models").json()["data"]}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    body = {"model": "egress-rebind", "messages": MESSAGES}
    probed = listener.accepted  # the session's server asked the new model its context window when registering it
    refused = strict_admin.post("/v1/chat/completions", json=body)
    assert refused.status_code == 502, refused.text
    assert "127.0.0.1 is loopback" in refused.json()["error"]["message"]
    assert listener.accepted == probed
    assert admin.post("/v1/chat/completions", json=body).status_code == 200  # the session's server does connect
    assert listener.accepted == probed + 1

    embedding = strict_admin.post("/api/repositories", json={"id": "egress-embed"})
    assert embedding.status_code == 502 and "127.0.0.1 is loopback" in embedding.json()["detail"], embedding.text
    assert strict_admin.get("/api/repositories/egress-embed").status_code == 404
    admin.delete("/api/models/egress-rebind")
