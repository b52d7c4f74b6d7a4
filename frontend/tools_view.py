"""How tool calls and generated images appear in the conversation, as plain functions of the backend's events and
data (no Gradio events here, so they test alone).

A tool call is a collapsible "thought" message of the chatbot placed just before the answer bubble (which keeps
growing below it): its title names the tool and its state, its body the arguments and the result or error. In safe
mode it carries Approve/Deny options until a decision arrives."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from frontend.chat_view import ChatHistory
from frontend.schemas_tools import SessionImage

APPROVE, DENY = "approve", "deny"
RESULT_CHARS = 2_000


def decision_of(value: str) -> tuple[bool, str] | None:
    """An Approve/Deny option's value (``approve:<call id>``) as (approve, call id); None for anything else."""
    verb, sep, call_id = (value or "").partition(":")
    if not sep or not call_id or verb not in (APPROVE, DENY):
        return None
    return verb == APPROVE, call_id


def _arguments(arguments: Any) -> str:
    text = json.dumps(arguments, indent=2, ensure_ascii=False) if isinstance(arguments, dict) else str(arguments)
    return f"```json\n{text}\n```"


def _tool_name(data: dict[str, Any]) -> str:
    return str(data.get("tool") or data.get("name") or "tool")


def _find(history: ChatHistory, call_id: str) -> int | None:
    for index in range(len(history) - 1, -1, -1):
        metadata = history[index].get("metadata") or {}
        if metadata.get("id") == f"tool:{call_id}":
            return index
    return None


def _put(history: ChatHistory, call_id: str, message: dict[str, Any], options: list[Any] | None = None) -> ChatHistory:
    """Replaces the call's message, or puts a new one just before the answer bubble (the last message). Gradio shows
    options (the Approve/Deny buttons) only under the conversation's last message: they go on the answer bubble too,
    and leave it with the call's next event."""
    index = _find(history, call_id)
    if index is not None:
        history = [*history[:index], message, *history[index + 1 :]]
    else:
        history = [*history[:-1], message, history[-1]] if history else [message]
    last = {k: v for k, v in history[-1].items() if k != "options"}
    if options:
        last["options"] = options
    return [*history[:-1], last]


def tool_message(call_id: str, title: str, body: str, status: str, log: str = "", **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"title": title, "id": f"tool:{call_id}", "status": status}
    if log:  # shown next to the title even while the message is folded
        metadata["log"] = log
    return {"role": "assistant", "content": body, "metadata": metadata, **extra}


def brief(arguments: Any, chars: int = 160) -> str:
    text = json.dumps(arguments, ensure_ascii=False) if isinstance(arguments, dict) else str(arguments)
    return text if len(text) <= chars else text[: chars - 1] + "…"


def apply_tool_event(history: ChatHistory, name: str, data: dict[str, Any]) -> ChatHistory | None:
    """The conversation after a tool event of the stream; None when the event is not a tool event."""
    if name == "tool_approval":
        call_id = str(data.get("call_id", ""))
        tool = _tool_name(data)
        body = f"The model wants to run **{escape(tool)}** with:\n\n{_arguments(data.get('arguments'))}"
        options = [
            {"label": "Approve", "value": f"{APPROVE}:{call_id}"},
            {"label": "Deny", "value": f"{DENY}:{call_id}"},
        ]
        message = tool_message(
            call_id,
            f"Tool {tool}: waiting for your approval",
            body,
            "pending",
            brief(data.get("arguments")),
            options=options,
        )
        return _put(history, call_id, message, options)
    if name == "tool_call":
        call_id = str(data.get("id", ""))
        tool = _tool_name(data)
        body = f"Arguments:\n\n{_arguments(data.get('arguments'))}"
        return _put(history, call_id, tool_message(call_id, f"Tool {tool}: running", body, "pending"))
    if name == "tool_result":
        call_id = str(data.get("id", ""))
        index = _find(history, call_id)
        earlier = history[index] if index is not None else {}
        tool = str((earlier.get("metadata") or {}).get("title", "")).removeprefix("Tool ").split(":")[0] or str(
            data.get("name") or "tool"
        )
        arguments = str(earlier.get("content") or "").split("\n\n", 1)[-1] if earlier else ""
        result = str(data.get("result") or "")
        if len(result) > RESULT_CHARS:
            result = result[:RESULT_CHARS] + "…"
        if data.get("approved") is False:
            state, shown = "denied", "You denied this call; the model was told so."
        elif data.get("is_error"):
            state, shown = "error", f"**Error:** {result}"
        else:
            state, shown = "done", f"Result:\n\n```\n{result}\n```"
        body = (f"Arguments:\n\n{arguments}\n\n" if arguments else "") + shown
        message = tool_message(call_id, f"Tool {tool}: {state}", body, "done")
        if isinstance(data.get("duration_ms"), int | float):
            message["metadata"]["duration"] = round(float(data["duration_ms"]) / 1000, 3)
        return _put(history, call_id, message)
    if name == "tool_limit":
        note = {"role": "assistant", "content": f"*{escape(str(data.get('detail') or 'tool call limit reached'))}*"}
        return [*history[:-1], note, history[-1]] if history else [note]
    return None


def images_markdown(images: list[SessionImage]) -> str:
    """The generated images as Markdown pointing at the session image route (the browser fetches them with its own
    session; never data URLs). Paths are the backend's own (``/api/sessions/...``)."""
    shown = []
    for image in images:
        if image.url.startswith("/api/sessions/") and all(c not in image.url for c in " ()<>"):
            alt = escape(" ".join(image.prompt.split())[:80]).translate(str.maketrans("", "", "[]()"))
            shown.append(f"![{alt}]({image.url})")
    return "\n\n".join(shown)
