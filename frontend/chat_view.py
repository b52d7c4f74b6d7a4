"""What the chat tab shows, as plain functions of the backend's data (no Gradio events here, so they test alone)."""

from __future__ import annotations

from typing import Any

from frontend.schemas import ChatArguments, Message, PromptTemplate, SessionSummary
from frontend.sse import UsageReport

ChatHistory = list[dict[str, Any]]  # gr.Chatbot's messages: {"role", "content"}
TITLE_CHARS = 60


def title_from(question: str) -> str:
    line = " ".join(question.split())
    return (line[: TITLE_CHARS - 1] + "…") if len(line) > TITLE_CHARS else (line or "New chat")


def meta_line(model: str | None, prompt_tokens: int, completion_tokens: int, latency_ms: float | None) -> str:
    """The small line under an answer: model, tokens in and out, how long it took."""
    parts = [f"`{model}`"] if model else []
    if prompt_tokens or completion_tokens:
        parts.append(f"{prompt_tokens} → {completion_tokens} tokens")
    if latency_ms is not None:
        parts.append(f"{latency_ms / 1000:.2f} s")
    return " · ".join(parts)


def with_meta(content: str, meta: str) -> str:
    return f"{content}\n\n<sub>{meta}</sub>" if meta else content


def message_meta(message: Message) -> str:
    metadata = message.metadata or {}
    usage = metadata.get("usage") or {}
    return meta_line(
        metadata.get("model"),
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        metadata.get("latency_ms"),
    )


def usage_meta(model: str | None, usage: UsageReport | None) -> str:
    if usage is None:
        return meta_line(model, 0, 0, None)
    return meta_line(model, usage.prompt_tokens, usage.completion_tokens, usage.latency_ms)


def status_note(message: Message) -> str:
    if message.status == "error":
        return f"\n\n**The answer failed:** {message.error or 'the model failed mid-answer'}"
    if message.status == "incomplete":
        return "\n\n*(stopped)*"
    return ""


def history_of(messages: list[Message], show_meta: bool) -> ChatHistory:
    """A session's active branch as the chatbot shows it."""
    history: ChatHistory = []
    for message in messages:
        if message.role not in ("user", "assistant"):
            continue
        content = message.content
        if message.role == "assistant":
            content += status_note(message)
            if show_meta:
                content = with_meta(content, message_meta(message))
        history.append({"role": message.role, "content": content})
    return history


def session_choices(sessions: list[SessionSummary]) -> list[tuple[str, str]]:
    return [(s.title, s.id) for s in sessions]


def _number(label: str, text: str | None, kind: type[int] | type[float]) -> Any:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{label} must be {'a whole number' if kind is int else 'a number'}, not {text!r}") from None


def parse_arguments(
    max_tokens: str | None, temperature: str | None, top_p: str | None, stop: str | None, seed: str | None
) -> ChatArguments:
    """The accordion's fields as the backend's allowlisted arguments (blank fields are left to the model). Ranges
    are the backend's to check: its refusal names the field."""
    words = [w.strip() for w in (stop or "").split(",") if w.strip()]
    return ChatArguments(
        max_tokens=_number("Max tokens", max_tokens, int),
        temperature=_number("Temperature", temperature, float),
        top_p=_number("Top p", top_p, float),
        stop=words or None,
        seed=_number("Seed", seed, int),
    )


def parse_variables(text: str | None) -> dict[str, str]:
    """``name = value`` lines (the templates' ``{{name}}`` placeholders); blank lines are skipped."""
    variables: dict[str, str] = {}
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"variables, line {number}: write it as name = value")
        variables[name.strip()] = value.strip()
    return variables


def template_choices(templates: list[PromptTemplate], kind: str) -> list[tuple[str, str]]:
    return [(t.title, t.id) for t in templates if t.kind == kind]
