"""Lifecycle workflows of models LISA deploys (ECS on moto_server), end to end through `lisa serve`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.backend.lifecycle.lifecycle_server import SPEC, LifecycleLisa, events, wait_status

pytestmark = pytest.mark.timeout(900)


def deployed(model_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "type": "textgen", "hosting": "internal", "deployment": {"deployer": "ecs", "spec": SPEC},
            **extra}  # fmt: skip


def test_a_deployed_model_goes_through_its_whole_lifecycle(lifecycle_lisa: LifecycleLisa) -> None:
    with lifecycle_lisa.client() as api:
        created = api.post("/api/models", json=deployed("wf-whole", context_window=2048))
        assert created.status_code == 202, created.text
        body = created.json()
        assert body["model"]["status"] == "Creating" and body["workflow"]["kind"] == "create"
        assert body["events_url"] == "/api/models/wf-whole/events"
        model = wait_status(api, "wf-whole", "InService")
        assert model["base_url"].endswith(".elb.amazonaws.com/v1"), model
        assert len(lifecycle_lisa.stacks("wf-whole")) == 1
        for action, during, after in (("disable", "Stopping", "Stopped"), ("enable", "Starting", "InService")):
            resp = api.post(f"/api/models/wf-whole/{action}")
            assert resp.status_code == 202, resp.text
            assert resp.json()["model"]["status"] == during
            wait_status(api, "wf-whole", after)
        resp = api.patch("/api/models/wf-whole", json={"deployment": {"spec": {"gpu_count": 2}}})
        assert resp.status_code == 202, resp.text
        model = wait_status(api, "wf-whole", "InService")
        assert model["deployment"]["spec"]["gpu_count"] == 2
        resp = api.delete("/api/models/wf-whole")
        assert resp.status_code == 202, resp.text
        wait_status(api, "wf-whole", None)
        assert lifecycle_lisa.stacks("wf-whole") == []
        for event in events(api, "wf-whole"):
            print(event["kind"], event["status"], event["step"], event["message"])
