"""The steps of each workflow. A step is idempotent (the deployers pick up what is already there), returns what it
found (merged into the workflow's data for the steps after it), and runs under a deadline the runner enforces.

The last step of each workflow ("register", "unregister") is final: it writes the model's end state and ends the
workflow in one transaction (backend/lifecycle/runner.py), so a crash leaves either all of it or none."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import RowMapping

from backend.lifecycle.deployers import Deployer, Deployment, DeploymentFailed, ModelSpec, Progress
from backend.lifecycle.probe import Probe
from backend.lifecycle.schemas import WorkflowKind
from backend.net.egress import EgressRefused

PROBE_PAUSE_SECONDS = 1.0


@dataclass
class StepContext:
    workflow: RowMapping
    deployer: Deployer[Any]
    spec: ModelSpec | None  # None for delete (the deployer needs only the model id)
    progress: Progress
    probe: Probe
    probe_seconds: float  # how long the probe step waits for the model to answer
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return str(self.workflow["model_id"])

    @property
    def target(self) -> dict[str, Any]:
        return dict(self.workflow["target"])

    def require_spec(self) -> ModelSpec:
        assert self.spec is not None, "this step needs the model's spec"
        return self.spec


StepRun = Callable[[StepContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Step:
    name: str
    run: StepRun | None  # None: a final step, run by the runner itself
    deadline: str  # which deadline: "deployer" (a deployment operation), "probe", "registry"


async def _served(ctx: StepContext, deployment: Deployment, step: str) -> dict[str, Any]:
    """The endpoint to register, once it passed the egress guard as an admin's base_url does (an ECS stack's
    ``http://<load balancer>/v1`` must lie in ``LISA_EGRESS_ALLOW``, the VPC's CIDR on AWS); one outside it fails the
    step with the guard's reason."""
    if not deployment.endpoint_url:
        raise DeploymentFailed(step, f"the deployment ({deployment.detail}) gave no endpoint to register")
    what = f"model '{ctx.model_id}': the endpoint its deployment reports ({deployment.endpoint_url})"
    try:
        unresolved = await ctx.probe.check_endpoint(deployment.endpoint_url, what)
    except EgressRefused as exc:
        raise DeploymentFailed(step, exc.message, resource="endpoint") from exc
    found: dict[str, Any] = {"endpoint_url": deployment.endpoint_url, "reference": deployment.reference}
    if unresolved is not None:
        found["endpoint_unresolved"] = unresolved
    return found


async def deploy(ctx: StepContext) -> dict[str, Any]:
    return await _served(ctx, await ctx.deployer.deploy(ctx.require_spec(), ctx.progress), "deploy")


async def update(ctx: StepContext) -> dict[str, Any]:
    """A stopped model takes its new spec and stays stopped (the deployer's stop deploys the spec scaled to none)."""
    if ctx.target.get("stopped"):
        return await _served(ctx, await ctx.deployer.stop(ctx.require_spec(), ctx.progress), "update")
    return await _served(ctx, await ctx.deployer.update(ctx.require_spec(), ctx.progress), "update")


async def start(ctx: StepContext) -> dict[str, Any]:
    return await _served(ctx, await ctx.deployer.start(ctx.require_spec(), ctx.progress), "start")


async def stop(ctx: StepContext) -> dict[str, Any]:
    await ctx.deployer.stop(ctx.require_spec(), ctx.progress)
    return {}


async def delete(ctx: StepContext) -> dict[str, Any]:
    await ctx.deployer.delete(ctx.model_id, ctx.progress)
    return {}


async def probe(ctx: StepContext) -> dict[str, Any]:
    """Wait (up to probe_seconds) for the model to answer; at create and update also ask its context window. A model
    that does not answer in time is registered all the same, marked unreachable: the health checks clear the mark
    once it answers, and meanwhile the gateway answers 503 at once."""
    if ctx.target.get("stopped"):
        return {}
    endpoint = str(ctx.data["endpoint_url"])
    deadline = time.monotonic() + ctx.probe_seconds
    while True:
        why = await ctx.probe.not_answering(endpoint)
        if why is None:
            found: dict[str, Any] = {"answered": True, "unreachable_reason": None}
            if ctx.workflow["kind"] in (WorkflowKind.create, WorkflowKind.update):
                served = ctx.target.get("served_name") or getattr(ctx.spec, "served_model_name", None) or ctx.model_id
                # What the server says, else the context the spec runs it with (a local llama.cpp's context_size)
                found["context_window"] = await ctx.probe.context_window(endpoint, served) or getattr(
                    ctx.spec, "context_size", None
                )
            return found
        if time.monotonic() + PROBE_PAUSE_SECONDS >= deadline:
            return {"answered": False, "unreachable_reason": why}
        await asyncio.sleep(PROBE_PAUSE_SECONDS)


REGISTER = Step("register", None, "registry")
STEPS: dict[WorkflowKind, tuple[Step, ...]] = {
    WorkflowKind.create: (Step("deploy", deploy, "deployer"), Step("probe", probe, "probe"), REGISTER),
    WorkflowKind.update: (Step("update", update, "deployer"), Step("probe", probe, "probe"), REGISTER),
    WorkflowKind.enable: (Step("start", start, "deployer"), Step("probe", probe, "probe"), REGISTER),
    WorkflowKind.disable: (Step("stop", stop, "deployer"), REGISTER),
    WorkflowKind.delete: (Step("delete", delete, "deployer"), Step("unregister", None, "registry")),
}
