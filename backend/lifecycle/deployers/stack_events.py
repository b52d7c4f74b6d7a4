"""Reading CloudFormation: which stack statuses are final, which events belong to the operation under way, and which
event says why it failed. Pure functions over boto3's dicts (``describe_stacks`` / ``describe_stack_events``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from backend.lifecycle.deployers.base import DeploymentEvent, DeploymentFailed, DeploymentTimeout

Raw = Mapping[str, Any]

STACK_TYPE = "AWS::CloudFormation::Stack"
# A stack-level event with one of these starts an operation (a rollback continues the operation it undoes).
OPERATION_STARTS = frozenset({"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS", "IMPORT_IN_PROGRESS"})
# Settled and running some version of the template (UPDATE_ROLLBACK_COMPLETE: the previous one, after a failed update).
SERVING = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"})
# Resources CloudFormation stopped because another one failed (or the stack's timeout passed): not the cause.
CANCELLED = ("Resource creation cancelled", "Resource update cancelled", "Resource deletion cancelled")


def in_progress(status: str) -> bool:
    """Still moving (REVIEW_IN_PROGRESS is a change set nobody executed: it never moves by itself)."""
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


def is_stack_event(event: Raw, stack_name: str) -> bool:
    return event.get("ResourceType") == STACK_TYPE and event.get("LogicalResourceId") == stack_name


def operation_window(newest_first: Iterable[Raw], stack_name: str) -> tuple[list[Raw], bool]:
    """The events of the latest operation, oldest first, from events listed newest first; and whether its start was
    found (when not, more pages may hold it)."""
    window: list[Raw] = []
    for event in newest_first:
        window.append(event)
        if is_stack_event(event, stack_name) and event.get("ResourceStatus") in OPERATION_STARTS:
            return window[::-1], True
    return window[::-1], False


def to_event(raw: Raw) -> DeploymentEvent:
    time = raw.get("Timestamp")
    return DeploymentEvent(
        id=str(raw.get("EventId", "")),
        time=time if isinstance(time, datetime) else datetime.now(UTC),
        resource=str(raw.get("LogicalResourceId", "")),
        resource_type=str(raw.get("ResourceType", "")),
        status=str(raw.get("ResourceStatus", "")),
        reason=raw.get("ResourceStatusReason") or None,
    )


def failure(step: str, stack: Raw, window: Sequence[Raw]) -> DeploymentFailed:
    """The operation's failure: the first resource that failed for a reason of its own, else the stack's reason."""
    name = str(stack.get("StackName", ""))
    for event in window:
        reason = str(event.get("ResourceStatusReason") or "")
        if (
            str(event.get("ResourceStatus", "")).endswith("_FAILED")
            and not is_stack_event(event, name)
            and not reason.startswith(CANCELLED)
        ):
            return DeploymentFailed(step, _with_status(event, reason), resource=str(event["LogicalResourceId"]))
    for event in reversed(window):
        reason = str(event.get("ResourceStatusReason") or "")
        if is_stack_event(event, name) and reason and reason != "User Initiated":
            return DeploymentFailed(step, f"stack {name} {stack.get('StackStatus')}: {reason}")
    reason = str(stack.get("StackStatusReason") or "no reason given")
    return DeploymentFailed(step, f"stack {name} {stack.get('StackStatus')}: {reason}")


def _with_status(event: Raw, reason: str) -> str:
    kind = event.get("ResourceType", "")
    return f"{event.get('ResourceStatus')} ({kind}): {reason or 'no reason given'}"


def timeout(step: str, stack: Raw, window: Sequence[Raw], seconds: float) -> DeploymentTimeout:
    """Past the deadline: what the operation was still waiting on (the resource in progress the longest)."""
    name = str(stack.get("StackName", ""))
    latest: dict[str, Raw] = {}
    for event in window:
        if not is_stack_event(event, name):
            latest[str(event.get("LogicalResourceId"))] = event
    waiting = [e for e in latest.values() if in_progress(str(e.get("ResourceStatus", "")))]
    waiting.sort(key=lambda e: e.get("Timestamp") or datetime.now(UTC))
    head = f"stack {name} still {stack.get('StackStatus')} after {seconds:g} s"
    if not waiting:
        return DeploymentTimeout(step, head)
    first = waiting[0]
    since = first.get("Timestamp")
    detail = f"{first.get('ResourceStatus')} ({first.get('ResourceType')})"
    if isinstance(since, datetime):
        detail += f" since {since.astimezone(UTC).isoformat(timespec='seconds')}"
    if first.get("ResourceStatusReason"):
        detail += f": {first['ResourceStatusReason']}"
    return DeploymentTimeout(step, f"{head}; waiting on {detail}", resource=str(first.get("LogicalResourceId")))
