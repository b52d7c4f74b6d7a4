"""Models on ECS: one CloudFormation stack per model (deploy/cloudformation/model.yaml), created, updated and
deleted through boto3, followed event by event until it settles or its deadline passes.

boto3 blocks, so every call runs in a thread. Each operation first reads the stack as it is, so that calling it again
(after a crash, or twice) continues or returns what is there: a stack being created is followed, a finished one
returned, a missing one deleted is success. A stack that fails names its failing resource and CloudFormation's reason
(:class:`DeploymentFailed`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

from backend.errors import BadRequest, Conflict
from backend.lifecycle.deployers import ecs_logs, stack_events
from backend.lifecycle.deployers.base import (
    MAX_LOG_LINES,
    Deployer,
    Deployment,
    DeploymentEvent,
    DeploymentFailed,
    DeploymentState,
    Progress,
)
from backend.lifecycle.deployers.ecs_render import EcsPlatform, RenderedStack, load_template, render
from backend.lifecycle.deployers.ecs_spec import EcsModelSpec, stack_name
from backend.lifecycle.deployers.stack_events import SERVING, Raw, in_progress

log = logging.getLogger(__name__)

Stack = dict[str, Any]
MAX_EVENT_PAGES = 20  # 100 events a page; a model stack's operation makes well under 200


def _no_stack(code: str, message: str) -> bool:
    return code == "ValidationError" and "does not exist" in message


def _no_updates(code: str, message: str) -> bool:
    return code == "ValidationError" and "No updates are to be performed" in message


def _exists(code: str, _message: str) -> bool:
    return code == "AlreadyExistsException"


def _no_log_group(code: str, _message: str) -> bool:
    return code == "ResourceNotFoundException"


class EcsDeployer(Deployer[EcsModelSpec]):
    kind: ClassVar[str] = "ecs"

    def __init__(
        self,
        platform: EcsPlatform,
        *,
        region: str = "",
        endpoint_url: str = "",
        timeout_seconds: float = 3600.0,
        poll_seconds: float = 10.0,
        client: Any = None,
    ) -> None:
        self.platform = platform
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self._region, self._endpoint_url = region, endpoint_url
        # made at the first call of each service (boto3 resolves region and credentials then)
        self._clients: dict[str, Any] = {"cloudformation": client} if client is not None else {}

    def _make_client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        kwargs: dict[str, Any] = {"region_name": self._region} if self._region else {}
        if self._endpoint_url:
            kwargs["endpoint_url"] = self._endpoint_url
        config = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=60)
        return boto3.session.Session().client(service, config=config, **kwargs)

    def _call_sync(self, service: str, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        if service not in self._clients:
            self._clients[service] = self._make_client(service)
        result: dict[str, Any] = getattr(self._clients[service], operation)(**kwargs)
        return result

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            if hasattr(client, "close"):
                await asyncio.to_thread(client.close)

    def render(self, spec: EcsModelSpec) -> RenderedStack:
        return render(spec, self.platform, load_template(self.platform.template_path))

    # ------------------------------------------------------------------------------------------ operations
    async def deploy(self, spec: EcsModelSpec, progress: Progress | None = None) -> Deployment:
        rendered = self.render(spec)
        stack = await self._existing("create", rendered.name, spec.model_id)
        if stack is not None and in_progress(stack["StackStatus"]):
            stack, window = await self._follow("create", stack, stack, progress)  # a create (or delete) left running
            if stack is not None and stack["StackStatus"] not in SERVING:
                raise stack_events.failure("create", stack, window)
        if stack is None:
            stack = await self._create(rendered, spec.model_id)
            stack, window = await self._follow("create", stack, stack, progress)
            if stack is None:
                raise DeploymentFailed("create", f"stack {rendered.name} was deleted while it was being created")
        if stack["StackStatus"] not in SERVING:
            raise stack_events.failure("create", stack, await self._window("create", stack))
        return self._deployment(stack, step="create")

    async def update(self, spec: EcsModelSpec, progress: Progress | None = None) -> Deployment:
        return await self._update("update", spec, progress)

    async def stop(self, spec: EcsModelSpec, progress: Progress | None = None) -> Deployment:
        """Scale to zero tasks and instances; the stack, its load balancer and its endpoint stay."""
        return await self._update("stop", spec.scaled_to_zero(), progress)

    async def start(self, spec: EcsModelSpec, progress: Progress | None = None) -> Deployment:
        return await self._update("start", spec, progress)

    async def delete(self, model_id: str, progress: Progress | None = None) -> None:
        name = stack_name(self.platform.stack_prefix, model_id)
        stack = await self._existing("delete", name, model_id)
        if stack is None:
            return
        status = stack["StackStatus"]
        current: Stack | None = stack
        if in_progress(status) and status not in ("CREATE_IN_PROGRESS", "DELETE_IN_PROGRESS"):
            current, _ = await self._follow("delete", stack, stack, progress)  # an update settles before a delete
        seen: set[str] = set()
        if current is not None and current["StackStatus"] != "DELETE_IN_PROGRESS":
            seen = {e["EventId"] for e in await self._window("delete", stack)}
            log.info("model %s: deleting stack %s", model_id, name)
            await self._call("delete", "delete_stack", StackName=stack["StackId"], **self._role())
            current = await self._describe("delete", stack["StackId"])
        current, window = await self._follow("delete", stack, current, progress, seen)
        if current is not None:
            raise stack_events.failure("delete", current, window)

    async def status(self, model_id: str) -> Deployment | None:
        stack = await self._existing("status", stack_name(self.platform.stack_prefix, model_id), model_id)
        if stack is None:
            return None
        return self._deployment(stack, step="status", window=await self._window("status", stack))

    async def events(self, model_id: str, limit: int = 100) -> list[DeploymentEvent]:
        stack = await self._existing("events", stack_name(self.platform.stack_prefix, model_id), model_id)
        if stack is None:
            return []
        raw: list[dict[str, Any]] = []
        token: str | None = None
        while len(raw) < limit:
            page = await self._call("events", "describe_stack_events", StackName=stack["StackId"], **_token(token))
            raw.extend(page.get("StackEvents", []))
            token = page.get("NextToken")
            if not token:
                break
        return [stack_events.to_event(e) for e in reversed(raw[:limit])]

    async def logs(self, model_id: str, lines: int = 100) -> str | None:
        """The last ``lines`` lines its containers wrote to CloudWatch Logs (backend/lifecycle/deployers/ecs_logs.py);
        None when the model has no stack; empty when nothing was written yet."""
        if not 1 <= lines <= MAX_LOG_LINES:
            raise BadRequest(f"lines must be from 1 to {MAX_LOG_LINES}", "lines")
        stack = await self._existing("logs", stack_name(self.platform.stack_prefix, model_id), model_id)
        if stack is None:
            return None
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        group = outputs.get("LogGroupName") or f"/ecs/{stack['StackName']}"

        async def call(operation: str, arguments: dict[str, Any]) -> dict[str, Any]:
            found = await self._aws("logs", operation, service="logs", tolerate=_no_log_group, **arguments)
            return found or {}

        return await ecs_logs.tail(call, group, lines)

    # ------------------------------------------------------------------------------------------ steps
    async def _create(self, rendered: RenderedStack, model_id: str) -> Stack:
        log.info(
            "model %s: creating stack %s (parameters %s; environment names %s)",
            model_id,
            rendered.name,
            rendered.parameters,
            self._environment_names(rendered),
        )
        created = await self._aws(
            "create",
            "create_stack",
            tolerate=_exists,
            StackName=rendered.name,
            TemplateBody=rendered.body,
            Parameters=rendered.parameter_list(),
            Capabilities=["CAPABILITY_IAM"],
            Tags=rendered.tag_list(),
            OnFailure="ROLLBACK",
            # CloudFormation gives up (and rolls back) when we would: nothing stays in CREATE_IN_PROGRESS.
            TimeoutInMinutes=max(1, math.ceil(self.timeout_seconds / 60)),
            **self._role(),
        )
        stack = await self._existing("create", created["StackId"] if created else rendered.name, model_id)
        if stack is None:
            raise DeploymentFailed("create", f"stack {rendered.name} vanished right after it was created")
        return stack

    async def _update(self, step: str, spec: EcsModelSpec, progress: Progress | None) -> Deployment:
        rendered = self.render(spec)
        stack = await self._existing(step, rendered.name, spec.model_id)
        if stack is not None and in_progress(stack["StackStatus"]):
            stack, window = await self._follow(step, stack, stack, progress)  # settle what a crashed process began
            if stack is not None and stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE":
                raise stack_events.failure(step, stack, window)  # that update failed: it would fail again
        if stack is None:
            raise DeploymentFailed(step, f"model {spec.model_id} has no stack {rendered.name}: deploy it first")
        if stack["StackStatus"] not in SERVING:
            failed = stack_events.failure(step, stack, await self._window(step, stack))
            raise DeploymentFailed(
                step,
                f"stack {rendered.name} is {stack['StackStatus']} and cannot be updated: delete the model's "
                f"deployment and deploy again ({failed.reason})",
                resource=failed.resource,
            )
        seen = {e["EventId"] for e in await self._window(step, stack)}
        log.info(
            "model %s: %s stack %s (parameters %s; environment names %s)",
            spec.model_id,
            "updating" if step == "update" else f"{step}: updating",
            rendered.name,
            rendered.parameters,
            self._environment_names(rendered),
        )
        updated = await self._aws(
            step,
            "update_stack",
            tolerate=_no_updates,
            StackName=stack["StackId"],
            TemplateBody=rendered.body,
            Parameters=rendered.parameter_list(),
            Capabilities=["CAPABILITY_IAM"],
            Tags=rendered.tag_list(),
            **self._role(),
        )
        if updated is None:  # nothing to change
            return self._deployment(stack, step=step)
        after = await self._describe(step, stack["StackId"])
        final, window = await self._follow(step, stack, after, progress, seen)
        if final is None:
            raise DeploymentFailed(step, f"stack {rendered.name} was deleted during the update")
        if final["StackStatus"] != "UPDATE_COMPLETE":
            raise stack_events.failure(step, final, window)
        return self._deployment(final, step=step)

    async def _follow(
        self, step: str, stack: Stack, current: Stack | None, progress: Progress | None, seen: set[str] | None = None
    ) -> tuple[Stack | None, list[Raw]]:
        """Wait until ``stack`` (described now as ``current``; None: gone) settles or is gone, reporting each event
        not ``seen``; return it as it ended (None: gone) and its operation's events."""
        seen = set() if seen is None else seen
        deadline = time.monotonic() + self.timeout_seconds
        stack_id, name = stack["StackId"], stack["StackName"]
        while True:
            window = await self._window(step, stack)
            for raw in window:
                if raw["EventId"] not in seen:
                    seen.add(raw["EventId"])
                    event = stack_events.to_event(raw)
                    log.info("stack %s: %s %s %s", name, event.resource, event.status, event.reason or "")
                    if progress is not None:
                        await progress(event)
            if current is None or not in_progress(current["StackStatus"]):
                return current, window
            if time.monotonic() >= deadline:
                raise stack_events.timeout(step, current, window, self.timeout_seconds)
            await asyncio.sleep(self.poll_seconds)
            current = await self._describe(step, stack_id)

    async def _window(self, step: str, stack: Stack) -> list[Raw]:
        """The events of the stack's latest operation, oldest first."""
        newest_first: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_EVENT_PAGES):
            page = await self._call(step, "describe_stack_events", StackName=stack["StackId"], **_token(token))
            newest_first.extend(page.get("StackEvents", []))
            window, complete = stack_events.operation_window(newest_first, stack["StackName"])
            token = page.get("NextToken")
            if complete or not token:
                return window
        return window

    # ------------------------------------------------------------------------------------------ reading
    async def _existing(self, step: str, name_or_id: str, model_id: str) -> Stack | None:
        """The model's stack, or None; a stack of that name made for another model is a conflict, never touched."""
        stack = await self._describe(step, name_or_id)
        if stack is None:
            return None
        owner = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", [])}.get("ModelId")
        if owner != model_id:
            raise Conflict(f"stack {stack['StackName']} belongs to model {owner!r}, not {model_id!r}")
        return stack

    async def _describe(self, step: str, name_or_id: str) -> Stack | None:
        found = await self._aws(step, "describe_stacks", tolerate=_no_stack, StackName=name_or_id)
        stacks = found.get("Stacks", []) if found else []
        if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
            return None
        return dict(stacks[0])

    def _deployment(self, stack: Stack, *, step: str, window: list[Raw] | None = None) -> Deployment:
        status = stack["StackStatus"]
        parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", [])}
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        endpoint = f"http://{outputs['LoadBalancerDnsName']}/v1" if outputs.get("LoadBalancerDnsName") else None
        endpoint = endpoint or outputs.get("EndpointUrl")
        reason: str | None = None
        if in_progress(status):
            state = DeploymentState.in_progress
        elif status in SERVING:
            state = DeploymentState.stopped if parameters.get("DesiredCapacity") == "0" else DeploymentState.ready
            if endpoint is None:
                raise DeploymentFailed("outputs", f"stack {stack['StackName']} has no LoadBalancerDnsName output")
            if status == "UPDATE_ROLLBACK_COMPLETE" and window is not None:
                reason = "the last update was rolled back: " + stack_events.failure(step, stack, window).reason
        else:
            state = DeploymentState.failed
            if window is not None:
                reason = str(stack_events.failure(step, stack, window))
        return Deployment(
            model_id=str(parameters.get("ModelId", "")),
            state=state,
            endpoint_url=endpoint,
            reference=stack["StackId"],
            detail=status,
            reason=reason or stack.get("StackStatusReason"),
        )

    # ------------------------------------------------------------------------------------------ AWS
    async def _call(self, step: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        result = await self._aws(step, operation, **kwargs)
        assert result is not None  # nothing tolerated
        return result

    async def _aws(
        self,
        step: str,
        operation: str,
        *,
        tolerate: Callable[[str, str], bool] | None = None,
        service: str = "cloudformation",
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """One boto3 call (of ``service``'s client) in a thread; an AWS error becomes :class:`DeploymentFailed`
        unless ``tolerate`` accepts its code and message (then None)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            result = await asyncio.to_thread(self._call_sync, service, operation, kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", exc))
            if tolerate is not None and tolerate(code, message):
                return None
            raise DeploymentFailed(step, f"{code}: {message}" if code else message) from exc
        except BotoCoreError as exc:  # no connection, no credentials, no region
            raise DeploymentFailed(step, f"{type(exc).__name__}: {exc}") from exc
        return result

    def _role(self) -> dict[str, str]:
        return {"RoleARN": self.platform.deploy_role_arn} if self.platform.deploy_role_arn else {}

    @staticmethod
    def _environment_names(rendered: RenderedStack) -> list[str]:
        """Names only: the values of a spec's environment are never logged."""
        containers = rendered.template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
        return [v["Name"] for c in containers for v in c.get("Environment", [])]


def _token(token: str | None) -> dict[str, str]:
    return {"NextToken": token} if token else {}
