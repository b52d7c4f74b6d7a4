"""An ECS model's own output: its containers write to CloudWatch Logs (the task definition's ``awslogs``
configuration in deploy/cloudformation/model.yaml), into the log group its stack made (the ``LogGroupName``
output), one stream per task (``model/<container>/<task id>``).

The tail is bounded three ways: the newest ``MAX_STREAMS`` streams (the tasks that ran last), at most ``lines``
events from each, and ``MAX_TAIL_BYTES`` of text, the oldest cut first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

MAX_STREAMS = 5
MAX_TAIL_BYTES = 1024 * 1024

Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _when(milliseconds: int) -> str:
    return datetime.fromtimestamp(milliseconds / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def tail(call: Call, group: str, lines: int) -> str:
    """The last ``lines`` events of the group's newest streams, oldest first, one line each:
    ``<time> <stream> <message>``. ``call(operation, arguments)`` is one CloudWatch Logs call."""
    listed = await call(
        "describe_log_streams",
        {"logGroupName": group, "orderBy": "LastEventTime", "descending": True, "limit": MAX_STREAMS},
    )
    found: list[tuple[int, str, str]] = []
    for stream in listed.get("logStreams", [])[:MAX_STREAMS]:
        name = str(stream["logStreamName"])
        page = await call(
            "get_log_events",
            {"logGroupName": group, "logStreamName": name, "limit": lines, "startFromHead": False},
        )
        found += [(int(e.get("timestamp", 0)), name, str(e.get("message", ""))) for e in page.get("events", [])]
    found.sort(key=lambda event: event[0])
    text = "".join(f"{_when(at)} {name} {message.rstrip()}\n" for at, name, message in found[-lines:])
    data = text.encode()
    if len(data) > MAX_TAIL_BYTES:
        kept = data[-MAX_TAIL_BYTES:]
        text = kept[kept.find(b"\n") + 1 :].decode(errors="replace")  # from the first whole line
    return text
