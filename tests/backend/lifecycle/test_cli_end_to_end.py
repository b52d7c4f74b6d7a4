"""`lisa models enable/disable/events/logs` run as a user runs them (the `lisa` command as a subprocess, with a token)
against the lifecycle tests' running LISA: a model LISA does not deploy (switched at once) and an ECS model on
moto (workflows followed with --wait, its CloudWatch logs), and each command on a model that does not exist."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import boto3
import pytest

from tests.backend.lifecycle.lifecycle_server import REGION, LifecycleLisa
from tests.backend.test_cli import output, run_cli
from tests.support import Proc

pytestmark = pytest.mark.timeout(900)


def as_admin(lisa: LifecycleLisa) -> list[str]:
    return ["--url", lisa.running.url, "--token", lisa.running.token]


def test_enable_disable_and_events_of_a_model_lisa_does_not_deploy(
    lifecycle_lisa: LifecycleLisa, faulty_upstream: Proc, tmp_path: Path
) -> None:
    model_id = f"cli-e2e-{secrets.token_hex(3)}"
    with lifecycle_lisa.client() as api:
        body = {"id": model_id, "type": "textgen", "hosting": "internal", "base_url": faulty_upstream.url + "/v1"}
        assert api.post("/api/models", json=body).status_code == 201

        disabled = run_cli("models", "disable", model_id, *as_admin(lifecycle_lisa), cwd=tmp_path)
        assert disabled.returncode == 0, output(disabled)
        assert f"disabling {model_id}: Stopped" in disabled.stdout
        assert api.get(f"/api/models/{model_id}").json()["status"] == "Stopped"

        again = run_cli("models", "disable", model_id, *as_admin(lifecycle_lisa), cwd=tmp_path)
        assert again.returncode == 1, output(again)
        assert f"error 409: model '{model_id}' is Stopped: disable needs it InService" in output(again)

        # The token from the environment, as a script would pass it.
        env = {"LISA_URL": lifecycle_lisa.running.url, "LISA_API_KEY": lifecycle_lisa.running.token}
        enabled = run_cli("models", "enable", model_id, cwd=tmp_path, env=env)
        assert enabled.returncode == 0, output(enabled)
        assert f"enabling {model_id}: InService" in enabled.stdout
        assert api.get(f"/api/models/{model_id}").json()["status"] == "InService"

        shown = run_cli("models", "events", model_id, *as_admin(lifecycle_lisa), cwd=tmp_path)
        assert shown.returncode == 0, output(shown)
        lines = shown.stdout.splitlines()
        assert [line.split(" ", 1)[1] for line in lines] == [
            "status [InService] registered: InService",
            "status [Stopped] disabled: Stopped",
            "status [InService] enabled: InService",
        ], lines
        as_json = run_cli(
            "models", "events", model_id, "--json", "--limit", "2", *as_admin(lifecycle_lisa), cwd=tmp_path
        )
        assert as_json.returncode == 0, output(as_json)
        assert [json.loads(line)["message"] for line in as_json.stdout.splitlines()] == [
            "disabled: Stopped", "enabled: InService"
        ]  # fmt: skip
        assert api.delete(f"/api/models/{model_id}").status_code == 204


def test_an_ecs_model_disabled_enabled_and_its_logs(lifecycle_lisa: LifecycleLisa, tmp_path: Path) -> None:
    model_id = f"cli-ecs-{secrets.token_hex(3)}"
    admin = as_admin(lifecycle_lisa)
    sets = ["--set", "engine=vllm", "--set", "instance_type=g5.xlarge", "--set", "weights.prefix=models/llama"]
    deployed = run_cli("models", "deploy", model_id, "--deployer", "ecs", *sets, "--wait", "--timeout", "120", *admin,
                       cwd=tmp_path, timeout=180)  # fmt: skip
    assert deployed.returncode == 0, output(deployed)
    assert f"{model_id} is InService" in deployed.stdout
    try:
        disabled = run_cli("models", "disable", model_id, "--wait", "--timeout", "120", *admin, cwd=tmp_path,
                           timeout=180)  # fmt: skip
        assert disabled.returncode == 0, output(disabled)
        assert "(disable) started" in disabled.stdout and f"{model_id} is Stopped" in disabled.stdout
        assert "step" in disabled.stdout  # the workflow's events, followed as they came

        enabled = run_cli("models", "enable", model_id, "--wait", "--timeout", "120", *admin, cwd=tmp_path,
                          timeout=180)  # fmt: skip
        assert enabled.returncode == 0, output(enabled)
        assert f"{model_id} is InService" in enabled.stdout

        shown = run_cli("models", "events", model_id, "--limit", "500", *admin, cwd=tmp_path)
        assert shown.returncode == 0, output(shown)
        statuses = [line for line in shown.stdout.splitlines() if " status [" in line]
        assert [s.split("] ", 1)[1] for s in statuses] == [
            "create started by admin: Creating", "register: create done: InService",
            "disable started by admin: Stopping", "register: disable done: Stopped",
            "enable started by admin: Starting", "register: enable done: InService",
        ], statuses  # fmt: skip

        # Its containers' output in CloudWatch Logs (the stack's log group), as the task's awslogs driver writes it.
        cf = boto3.client("cloudformation", endpoint_url=lifecycle_lisa.moto.url, region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        [summary] = lifecycle_lisa.stacks(model_id)
        [stack] = cf.describe_stacks(StackName=summary["StackId"])["Stacks"]
        group = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["LogGroupName"]
        logs = boto3.client("logs", endpoint_url=lifecycle_lisa.moto.url, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        logs.create_log_stream(logGroupName=group, logStreamName="model/vllm/t1")
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName=group, logStreamName="model/vllm/t1",
                            logEvents=[{"timestamp": now + i, "message": f"INFO line {i}"} for i in range(3)])  # fmt: skip
        tail = run_cli("models", "logs", model_id, "--lines", "2", *admin, cwd=tmp_path)
        assert tail.returncode == 0, output(tail)
        assert [line.split(" ", 2)[1:] for line in tail.stdout.splitlines()] == [
            ["model/vllm/t1", "INFO line 1"], ["model/vllm/t1", "INFO line 2"]
        ]  # fmt: skip
        refused = run_cli("models", "logs", model_id, "--lines", "0", *admin, cwd=tmp_path)
        assert refused.returncode == 2 and "--lines" in output(refused)  # typer's own bound, before any request
    finally:
        deleted = run_cli("models", "delete", model_id, "--wait", "--timeout", "120", *admin, cwd=tmp_path,
                          timeout=180)  # fmt: skip
        assert deleted.returncode == 0, output(deleted)
    assert lifecycle_lisa.stacks(model_id) == []


@pytest.mark.parametrize("command", ["enable", "disable", "events", "logs"])
def test_an_unknown_model_exits_1_saying_so(lifecycle_lisa: LifecycleLisa, tmp_path: Path, command: str) -> None:
    model_id = f"no-such-model-{secrets.token_hex(3)}"
    result = run_cli("models", command, model_id, *as_admin(lifecycle_lisa), cwd=tmp_path)
    assert result.returncode == 1, output(result)
    assert f"error 404: model '{model_id}' not found" in output(result)


def test_a_wrong_token_exits_1_and_no_token_exits_2(lifecycle_lisa: LifecycleLisa, tmp_path: Path) -> None:
    wrong = run_cli("models", "events", "x", "--url", lifecycle_lisa.running.url, "--token", "lisa_bogus", cwd=tmp_path)
    assert wrong.returncode == 1 and "error 401" in output(wrong)
    none = run_cli("models", "enable", "x", "--url", lifecycle_lisa.running.url, cwd=tmp_path)
    assert none.returncode == 2 and "no API token" in output(none)
