"""CloudFormation as AWS runs it, scripted: operations return at once and the stack moves on between calls, emitting
events (moto creates stacks synchronously and never fails a resource in an event, so these flows cannot be shown
there). Each ``describe_stacks`` advances the stack by one scripted step; responses have boto3's shapes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

STACK_TYPE = "AWS::CloudFormation::Stack"
# (status the stack moves to, events emitted with it: (logical id, type, status, reason))
Step = tuple[str, list[tuple[str, str, str, str | None]]]


def client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message, "Type": "Sender"}}, operation)


@dataclass
class ScriptedCloudFormation:
    name: str
    model_id: str
    on_create: list[Step] = field(default_factory=list)
    on_update: list[Step] = field(default_factory=list)
    on_delete: list[Step] = field(default_factory=list)
    no_updates: bool = False  # update_stack answers "No updates are to be performed."
    status: str | None = None  # None: no stack
    parameters: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # newest first, as AWS lists them
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    pending: list[Step] = field(default_factory=list)
    stack_id: str = ""
    _clock: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.stack_id = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{self.name}/0f0f"
        self.parameters = self.parameters or {"ModelId": self.model_id, "DesiredCapacity": "1"}

    # ---------------------------------------------------------------- scripting
    def exists(
        self, status: str, history: list[Step] | None = None, then: list[Step] | None = None
    ) -> ScriptedCloudFormation:
        """A stack already there (made by an earlier process): its past as steps, its status now, and the steps it
        still takes by itself (an operation left running)."""
        self.status = "CREATE_IN_PROGRESS"
        self._emit(self.name, STACK_TYPE, "CREATE_IN_PROGRESS", "User Initiated")
        for step in history or []:
            self._apply(step)
        self.status = status
        self.pending = list(then or [])
        return self

    def _emit(self, logical: str, kind: str, status: str, reason: str | None) -> None:
        self._clock += timedelta(seconds=5)
        event = {
            "StackId": self.stack_id,
            "EventId": f"event-{next(self._ids)}",
            "StackName": self.name,
            "LogicalResourceId": logical,
            "PhysicalResourceId": "",
            "ResourceType": kind,
            "Timestamp": self._clock,
            "ResourceStatus": status,
        }
        if reason:
            event["ResourceStatusReason"] = reason
        self.events.insert(0, event)

    def _apply(self, step: Step) -> None:
        status, events = step
        for logical, kind, event_status, reason in events:
            self._emit(logical, kind, event_status, reason)
        self.status = status

    def _start(self, status: str, script: list[Step]) -> None:
        self._emit(self.name, STACK_TYPE, status, "User Initiated")
        self.status = status
        self.pending = list(script)

    # ---------------------------------------------------------------- the boto3 client's methods
    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        self.calls.append(("describe_stacks", {"StackName": StackName}))
        if self.pending:
            self._apply(self.pending.pop(0))
        gone = self.status is None or (self.status == "DELETE_COMPLETE" and StackName != self.stack_id)
        if gone or StackName not in (self.name, self.stack_id):
            raise client_error("ValidationError", f"Stack with id {StackName} does not exist", "DescribeStacks")
        stack: dict[str, Any] = {
            "StackId": self.stack_id,
            "StackName": self.name,
            "StackStatus": self.status,
            "CreationTime": self._clock,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()],
        }
        if self.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
            dns = f"internal-{self.name[:20]}-123.us-east-1.elb.amazonaws.com"
            stack["Outputs"] = [
                {"OutputKey": "LoadBalancerDnsName", "OutputValue": dns},
                {"OutputKey": "EndpointUrl", "OutputValue": f"http://{dns}/v1"},
            ]
        return {"Stacks": [stack]}

    def describe_stack_events(self, StackName: str, NextToken: str | None = None) -> dict[str, Any]:
        self.calls.append(("describe_stack_events", {"StackName": StackName}))
        start = int(NextToken or 0)
        page: dict[str, Any] = {"StackEvents": self.events[start : start + 3]}  # small pages: paging is exercised
        if start + 3 < len(self.events):
            page["NextToken"] = str(start + 3)
        return page

    def create_stack(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("create_stack", kwargs))
        if self.status is not None and self.status != "DELETE_COMPLETE":
            raise client_error("AlreadyExistsException", f"Stack [{self.name}] already exists", "CreateStack")
        self.parameters = {p["ParameterKey"]: p["ParameterValue"] for p in kwargs["Parameters"]}
        self._start("CREATE_IN_PROGRESS", self.on_create)
        return {"StackId": self.stack_id}

    def update_stack(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("update_stack", kwargs))
        if self.no_updates:
            raise client_error("ValidationError", "No updates are to be performed.", "UpdateStack")
        self._start("UPDATE_IN_PROGRESS", self.on_update)
        return {"StackId": self.stack_id}

    def delete_stack(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("delete_stack", kwargs))
        self._start("DELETE_IN_PROGRESS", self.on_delete)
        return {}

    def called(self, operation: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.calls if name == operation]
