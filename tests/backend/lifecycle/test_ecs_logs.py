"""The bounds of an ECS model's log tail (backend/lifecycle/deployers/ecs_logs.py), on CloudWatch Logs answers as
boto3 returns them; the tail of a real stack's log group is tested on moto in test_ecs_endpoints.py."""

from __future__ import annotations

from typing import Any

from backend.lifecycle.deployers import ecs_logs


class FakeLogs:
    """CloudWatch Logs' two read calls over ``streams`` (name -> [(timestamp ms, message)]), recording each call."""

    def __init__(self, streams: dict[str, list[tuple[int, str]]]) -> None:
        self.streams = streams
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, operation: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, arguments))
        if operation == "describe_log_streams":
            newest = sorted(self.streams, key=lambda s: max(t for t, _ in self.streams[s]), reverse=True)
            return {"logStreams": [{"logStreamName": s} for s in newest[: arguments["limit"]]]}
        events = self.streams[arguments["logStreamName"]][-arguments["limit"] :]
        return {"events": [{"timestamp": t, "message": m} for t, m in events]}


async def test_the_newest_streams_merged_by_time_and_cut_to_the_lines_asked() -> None:
    streams = {f"model/vllm/t{i}": [(1_000 * i + j, f"t{i} {j}\n") for j in range(3)] for i in range(8)}
    fake = FakeLogs(streams)
    text = await ecs_logs.tail(fake, "/ecs/lisa-model-x", 4)
    assert [line.split(" ", 1)[1] for line in text.splitlines()] == [
        "model/vllm/t6 t6 2", "model/vllm/t7 t7 0", "model/vllm/t7 t7 1", "model/vllm/t7 t7 2"
    ]  # fmt: skip
    assert text.splitlines()[0].startswith("1970-01-01T00:00:06.002Z ")
    # At most MAX_STREAMS streams read, each for at most the lines asked.
    reads = [args for op, args in fake.calls if op == "get_log_events"]
    assert len(reads) == ecs_logs.MAX_STREAMS and all(a["limit"] == 4 and a["startFromHead"] is False for a in reads)
    assert await ecs_logs.tail(FakeLogs({}), "/ecs/empty", 10) == ""


async def test_the_tail_is_cut_to_its_byte_bound_from_the_oldest_whole_line() -> None:
    big = "x" * 100_000
    fake = FakeLogs({"model/vllm/t": [(i, f"{i:03d} {big}") for i in range(30)]})
    text = await ecs_logs.tail(fake, "/ecs/lisa-model-big", 30)
    assert len(text.encode()) <= ecs_logs.MAX_TAIL_BYTES
    lines = text.splitlines()
    assert lines[-1].split(" ")[2] == "029" and lines[0].split(" ")[2] == f"{30 - len(lines):03d}"
    assert all(line.endswith(big) for line in lines)  # no line cut in the middle
