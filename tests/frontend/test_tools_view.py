"""How tool calls and images appear in the chat (pure functions of the stream's events and the backend's data)."""

from __future__ import annotations

from frontend.client_tools import tool_fields
from frontend.schemas_tools import SessionImage
from frontend.tools_view import apply_tool_event, decision_of, images_markdown

QUESTION = {"role": "user", "content": "2+3?"}
BUBBLE = {"role": "assistant", "content": ""}


def test_a_safe_mode_call_waits_with_approve_and_deny_then_shows_its_result() -> None:
    history = [QUESTION, BUBBLE]
    approval = {"call_id": "c1", "name": "srv__add", "tool": "add", "arguments": {"a": 2, "b": 3}}
    waiting = apply_tool_event(history, "tool_approval", approval)
    assert waiting is not None and len(waiting) == 3
    call = waiting[1]
    assert call["metadata"]["title"] == "Tool add: waiting for your approval" and '"a": 2' in call["content"]
    assert call["metadata"]["log"] == '{"a": 2, "b": 3}'  # the arguments in view even while the message is folded
    options = [o["value"] for o in waiting[-1]["options"]]  # under the last message, where Gradio shows them
    assert options == ["approve:c1", "deny:c1"] and waiting[-1]["content"] == ""
    running = apply_tool_event(waiting, "tool_call", {"id": "c1", "tool": "add", "arguments": {"a": 2, "b": 3}})
    assert running is not None and len(running) == 3 and "options" not in running[-1]
    assert running[1]["metadata"]["title"] == "Tool add: running"
    done = apply_tool_event(running, "tool_result", {"id": "c1", "result": "5", "is_error": False, "approved": True,
                                                     "duration_ms": 12})  # fmt: skip
    assert done is not None and len(done) == 3
    assert done[1]["metadata"] == {"title": "Tool add: done", "id": "tool:c1", "status": "done", "duration": 0.012}
    assert "```\n5\n```" in done[1]["content"] and '"b": 3' in done[1]["content"]
    assert done[0] == QUESTION and done[-1] == BUBBLE


def test_a_denied_call_and_a_failing_call_say_so() -> None:
    denied = apply_tool_event([QUESTION, BUBBLE], "tool_result",
                              {"id": "c2", "name": "srv__echo", "result": "", "is_error": True, "approved": False})  # fmt: skip
    assert denied is not None and denied[1]["metadata"]["title"].endswith(": denied")
    assert "You denied this call" in denied[1]["content"]
    failed = apply_tool_event([QUESTION, BUBBLE], "tool_result",
                              {"id": "c3", "name": "fail", "result": "boom", "is_error": True, "approved": True})  # fmt: skip
    assert failed is not None and "**Error:** boom" in failed[1]["content"]
    assert failed[1]["metadata"]["title"] == "Tool fail: error"


def test_other_events_are_not_tool_events_and_text_is_escaped() -> None:
    assert apply_tool_event([QUESTION, BUBBLE], "compaction", {"notice": "x"}) is None
    limit = apply_tool_event([QUESTION, BUBBLE], "tool_limit", {"detail": "<b>20 calls</b>"})
    assert limit is not None and "&lt;b&gt;" in limit[1]["content"] and limit[-1] == BUBBLE


def test_decisions_and_turn_fields() -> None:
    assert decision_of("approve:call_1") == (True, "call_1")
    assert decision_of("deny:x:y") == (False, "x:y")
    for bad in ("", "approve", "approve:", "maybe:c1", "Approve"):
        assert decision_of(bad) is None
    assert tool_fields([], "autopilot") == {} and tool_fields(None, None) == {}
    assert tool_fields(["s1/add"], "autopilot") == {"tools": ["s1/add"], "tool_mode": "autopilot"}
    assert tool_fields(["s1/add"], "anything else") == {"tools": ["s1/add"], "tool_mode": "safe"}


def test_images_point_at_the_session_image_route_only() -> None:
    good = SessionImage(
        id="img_1", session_id="ses_1", model="p", prompt="a [lighthouse]", url="/api/sessions/ses_1/images/img_1"
    )
    bad = SessionImage(id="img_2", session_id="ses_1", model="p", prompt="x", url="https://elsewhere.example/x.png")
    shown = images_markdown([good, bad])
    assert shown == "![a lighthouse](/api/sessions/ses_1/images/img_1)"
