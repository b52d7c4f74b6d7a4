"""Runs one workflow to its end, step after step, from wherever it stands (a workflow whose process stopped resumes
at the step it was in).

Each step is recorded as started, with its deadline, before it runs, and as done after; a step started before a
crash runs again (steps are idempotent) with what is left of its deadline, and one whose deadline passed meanwhile
fails. Every failure (the deployer's, a deadline, anything unexpected) ends the workflow and marks the model
``Failed`` with the workflow, the step and the reason, in one transaction."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.errors import LisaError
from backend.lifecycle import faults, store
from backend.lifecycle.deployers import DeploymentEvent, DeploymentFailed, Progress
from backend.lifecycle.deployments import Deployers
from backend.lifecycle.finish import Finisher
from backend.lifecycle.probe import Probe
from backend.lifecycle.schemas import WorkflowKind, WorkflowState
from backend.lifecycle.steps import STEPS, Step, StepContext

log = logging.getLogger("lisa.lifecycle")


@dataclass(frozen=True)
class Deadlines:
    """Seconds each kind of step may take: a deployment operation, the probe of the model, a registry write."""

    deployer: float = 5400.0
    probe: float = 180.0
    registry: float = 60.0

    def of(self, step: Step) -> float:
        return float(getattr(self, step.deadline))


class StepFailed(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step {step}: {reason}")
        self.step = step
        self.reason = reason


class WorkflowRunner:
    def __init__(
        self,
        engine: AsyncEngine,
        finisher: Finisher,
        deployers: Deployers,
        probe: Probe,
        *,
        deadlines: Deadlines,
        probe_seconds: float,
    ) -> None:
        self.engine = engine
        self.finisher = finisher
        self.deployers = deployers
        self.probe = probe
        self.deadlines = deadlines
        self.probe_seconds = probe_seconds

    async def run(self, workflow_id: str) -> None:
        workflow = await store.load(self.engine, workflow_id)
        if workflow is None or workflow["state"] != WorkflowState.running:
            return  # ended already (a job queued twice, or resumed after it finished)
        steps = STEPS[WorkflowKind(workflow["kind"])]
        data: dict[str, Any] = dict(workflow["data"])
        index = int(workflow["step_index"])
        current = steps[min(index, len(steps) - 1)].name
        try:
            while index < len(steps):
                step = steps[index]
                current = step.name
                workflow = await self._run_step(workflow, index, step, data)
                index += 1
        except StepFailed as exc:
            await self.finisher.fail(workflow, exc.step, exc.reason)
        except DeploymentFailed as exc:
            await self.finisher.fail(workflow, current, str(exc))
        except LisaError as exc:
            await self.finisher.fail(workflow, current, exc.message)
        except Exception as exc:  # anything unexpected still ends the workflow with a reason, never a silent hang
            log.exception("workflow %s failed at step %s", workflow_id, current)
            await self.finisher.fail(workflow, current, f"{type(exc).__name__}: {exc}")

    async def _run_step(self, workflow: RowMapping, index: int, step: Step, data: dict[str, Any]) -> RowMapping:
        kind = str(workflow["kind"])
        seconds = self.deadlines.of(step)
        now = datetime.now(UTC)
        if workflow["step_started_at"] is not None and workflow["step"] == step.name:
            deadline_at: datetime = workflow["step_deadline_at"]
            if deadline_at <= now:
                raise StepFailed(
                    step.name,
                    f"did not finish within its deadline of {seconds:g} s (LISA stopped while it ran and was back "
                    "only after its deadline)",
                )
            await self.finisher.event(workflow, step.name, f"{kind}: step {step.name} resumed after a restart")
        else:
            deadline_at = now + timedelta(seconds=seconds)
            workflow = await store.step_started(self.engine, workflow, index, step.name, deadline_at)
            faults.crash_point(kind, step.name, "start")
        remaining = max(0.0, (deadline_at - datetime.now(UTC)).total_seconds())
        context = StepContext(
            workflow=workflow,
            deployer=self.deployers.get(str(workflow["deployer"])),
            spec=self._spec(workflow),
            progress=self._progress(workflow, step.name),
            probe=self.probe,
            probe_seconds=self.probe_seconds,
            data=data,
        )
        try:
            async with asyncio.timeout(remaining) as limit:
                await faults.stall_point(kind, step.name)
                if step.run is None:
                    await self.finisher.finish(workflow, step.name, data)
                    return workflow
                found = await step.run(context)
        except TimeoutError:
            if limit.expired():
                raise StepFailed(step.name, f"did not finish within its deadline of {seconds:g} s") from None
            raise
        data.update(found)
        await store.step_done(self.engine, workflow, index, step.name, found)
        faults.crash_point(kind, step.name, "end")
        return workflow

    def _spec(self, workflow: RowMapping) -> Any:
        fields = workflow["target"].get("spec")
        if fields is None:
            return None
        return self.deployers.spec(str(workflow["deployer"]), str(workflow["model_id"]), dict(fields))

    def _progress(self, workflow: RowMapping, step: str) -> Progress:
        first = True

        async def report(event: DeploymentEvent) -> None:
            nonlocal first
            await self.finisher.deployment_event(workflow, step, event)
            if first:
                first = False
                faults.crash_point(str(workflow["kind"]), step, "during")

        return report
