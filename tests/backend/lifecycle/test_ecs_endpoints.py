"""An ECS model's endpoint and logs, end to end through `lisa serve` against `moto_server`.

moto's load balancers have names that resolve nowhere, so this LISA deploys a copy of deploy/cloudformation/model.yaml
whose ``LoadBalancerDnsName`` output is the stack's ``ModelId`` parameter, nothing else changed: a model id that is an
address (``10.20.1.7``) makes the stack report that address, as an internal load balancer's name resolves to one of
the VPC's. The server runs with ``LISA_EGRESS_ALLOW`` set to loopback and the VPC's CIDR (10.20.0.0/16), as the AWS
core stack sets it to its VPC's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from backend.lifecycle.deployers.ecs_render import DEFAULT_TEMPLATE
from tests.backend.lifecycle.lifecycle_server import REGION, SPEC, LifecycleLisa, events, wait_status
from tests.support import Proc

pytestmark = pytest.mark.timeout(900)
OUTPUT = "  LoadBalancerDnsName:\n    Value: !GetAtt LoadBalancer.DNSName\n"
INSIDE, OUTSIDE = "10.20.1.7", "10.99.0.5"  # in the test VPC's CIDR (lifecycle_server.network), and not


@pytest.fixture(scope="module")
def ecs_lisa(tmp_path_factory: pytest.TempPathFactory, moto_server: Proc) -> Iterator[LifecycleLisa]:
    root = tmp_path_factory.mktemp("ecs-endpoints")
    template = Path(DEFAULT_TEMPLATE).read_text()
    assert template.count(OUTPUT) == 1, "the model template's LoadBalancerDnsName output moved"
    variant = root / "model.yaml"
    variant.write_text(template.replace(OUTPUT, "  LoadBalancerDnsName:\n    Value: !Ref ModelId\n"))
    lisa = LifecycleLisa(root, moto_server)
    lisa.start(LISA_AWS_MODEL_TEMPLATE=str(variant), LISA_EGRESS_ALLOW="127.0.0.0/8,::1/128,10.20.0.0/16")
    yield lisa
    lisa.stop()


def deploy(api: httpx.Client, model_id: str) -> None:
    api.delete(f"/api/models/{model_id}")
    wait_status(api, model_id, None)
    body = {"id": model_id, "type": "textgen", "hosting": "internal", "deployment": {"deployer": "ecs", "spec": SPEC}}
    resp = api.post("/api/models", json=body)
    assert resp.status_code == 202, resp.text


def logs_client(lisa: LifecycleLisa) -> Any:
    return boto3.client("logs", endpoint_url=lisa.moto.url, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")  # fmt: skip


def stack_output(lisa: LifecycleLisa, model_id: str, key: str) -> str:
    cf = boto3.client("cloudformation", endpoint_url=lisa.moto.url, region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    [summary] = lisa.stacks(model_id)
    [stack] = cf.describe_stacks(StackName=summary["StackId"])["Stacks"]
    return str({o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}[key])


def test_a_stack_output_outside_the_egress_allowlist_fails_the_workflow(ecs_lisa: LifecycleLisa) -> None:
    with ecs_lisa.client() as api:
        deploy(api, OUTSIDE)
        failed = wait_status(api, OUTSIDE, "Failed")
        reason = str(failed["status_reason"])
        assert reason.startswith("create failed at step deploy: deploy failed at endpoint:"), reason
        assert f"the endpoint its deployment reports (http://{OUTSIDE}/v1)" in reason, reason
        assert f"{OUTSIDE} is private; not allowed" in reason, reason
        assert failed["base_url"] is None  # never registered
        assert not any(m["id"] == OUTSIDE for m in api.get("/v1/models").json()["data"])
        assert any(e["status"] == "Failed" and "not allowed" in e["message"] for e in events(api, OUTSIDE))
        # The failed model's stack goes with it.
        assert api.delete(f"/api/models/{OUTSIDE}").status_code == 202
        wait_status(api, OUTSIDE, None)
        assert ecs_lisa.stacks(OUTSIDE) == []

        # An address inside the allowlist (the VPC's) is registered.
        deploy(api, INSIDE)
        model = wait_status(api, INSIDE, "InService")
        assert model["base_url"] == f"http://{INSIDE}/v1" and model["status_reason"] is None


def test_the_logs_of_an_ecs_model_are_its_cloudwatch_log_group(ecs_lisa: LifecycleLisa) -> None:
    with ecs_lisa.client() as api:
        if api.get(f"/api/models/{INSIDE}").json().get("status") != "InService":
            deploy(api, INSIDE)
            wait_status(api, INSIDE, "InService")
        group = stack_output(ecs_lisa, INSIDE, "LogGroupName")
        assert group.startswith("/ecs/lisa-model-")
        empty = api.get(f"/api/models/{INSIDE}/logs")
        assert empty.status_code == 200 and empty.text == "", empty.text  # the group the stack made, no output yet

        logs = logs_client(ecs_lisa)
        now = int(time.time() * 1000)
        for task, offset in (("task-a", 0), ("task-b", 1)):
            stream = f"model/vllm/{task}"
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
            logs.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=[{"timestamp": now + 10 * i + offset, "message": f"{task} line {i}"} for i in range(5)],
            )
        tail = api.get(f"/api/models/{INSIDE}/logs", params={"lines": 4})
        assert tail.status_code == 200 and tail.headers["content-type"].startswith("text/plain")
        lines = tail.text.splitlines()
        # The newest 4 events of both tasks' streams, oldest first, each with its time and stream.
        assert [line.split(" ", 2)[2] for line in lines] == [
            "task-a line 3", "task-b line 3", "task-a line 4", "task-b line 4"
        ], lines  # fmt: skip
        assert lines[-1].split(" ")[1] == "model/vllm/task-b" and lines[0].endswith("Z model/vllm/task-a task-a line 3")
        everything = api.get(f"/api/models/{INSIDE}/logs", params={"lines": 200}).text.splitlines()
        assert len(everything) == 10

        # Bounded, admins only, and only for a model LISA deploys.
        assert api.get(f"/api/models/{INSIDE}/logs", params={"lines": 0}).status_code == 422
        assert api.get(f"/api/models/{INSIDE}/logs", params={"lines": 10_001}).status_code == 422
        user = api.post("/api/tokens", json={"name": "logs", "username": "ecs-logs-user", "groups": []}).json()
        with ecs_lisa.client(user["token"]) as plain:
            assert plain.get(f"/api/models/{INSIDE}/logs").status_code == 403
        assert api.get("/api/models/no-such-model/logs").status_code == 404
        api.delete("/api/models/ecs-plain")
        plain_model = {"id": "ecs-plain", "type": "textgen", "hosting": "third_party", "provider_model": "openai/x"}
        assert api.post("/api/models", json=plain_model).status_code == 201
        missing = api.get("/api/models/ecs-plain/logs")
        assert missing.status_code == 404 and "not deployed by LISA" in missing.json()["detail"]
        assert api.delete("/api/models/ecs-plain").status_code == 204
