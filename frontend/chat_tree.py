"""What the chat tab shows of a session's message tree, its cited sources and a summary's progress: plain functions
of the backend's data (no Gradio here, so they test alone)."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from frontend.chat_view import ChatHistory, message_meta, status_note, with_meta
from frontend.schemas import Message
from frontend.tools_view import apply_tool_event

PREVIEW_CHARS = 1500
PREVIOUS, NEXT = "\u2039", "\u203a"  # the branch switcher's arrows


def shown_messages(messages: list[Message]) -> list[Message]:
    """The messages the chatbot shows, in its order (its indices are this list's)."""
    return [m for m in messages if m.role in ("user", "assistant")]


def branch_marker(message: Message) -> str:
    return f"{PREVIOUS} {message.sibling_index + 1}/{len(message.siblings)} {NEXT}" if len(message.siblings) > 1 else ""


def render(messages: list[Message], show_meta: bool) -> ChatHistory:
    """The active branch as the chatbot shows it: answers with their status, sources and metadata, and a
    "< 1/2 >" mark on every message that has alternatives."""
    history: ChatHistory = []
    for message in shown_messages(messages):
        content = message.content
        if message.role == "assistant":
            history.extend(tool_messages(message))
            content += status_note(message)
            if cited := sources_of(message):
                content += "\n\n" + sources_line(cited)
            if show_meta:
                content = with_meta(content, message_meta(message))
        if marker := branch_marker(message):
            content += f"\n\n<sub>{marker}</sub>"
        history.append({"role": message.role, "content": content})
    return history


def tool_messages(message: Message) -> ChatHistory:
    """The tool calls an answer made (its recorded ``tool_calls``), drawn as during the stream: one message each,
    before the answer."""
    calls = message.metadata.get("tool_calls")
    shown: ChatHistory = [{"role": "assistant", "content": ""}]  # the answer's place: the calls go before it
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, dict):
            shown = apply_tool_event(shown, "tool_call", call) or shown
            shown = apply_tool_event(shown, "tool_result", call) or shown
    return shown[:-1]


def short(text: str, chars: int = 40) -> str:
    line = " ".join(text.split())
    return line if len(line) <= chars else line[: chars - 1] + "…"


def branch_points(messages: list[Message]) -> list[tuple[str, str]]:
    """The shown messages that have alternatives, as picker choices (label, id); the last one first."""
    points = []
    for number, message in enumerate(shown_messages(messages), 1):
        if len(message.siblings) > 1:
            who = "Question" if message.role == "user" else "Answer"
            label = f"#{number} {who} {branch_marker(message)}: {short(message.content) or '(empty)'}"
            points.append((label, message.id))
    return points[::-1]


def sibling_at(message: Message, step: int) -> str | None:
    """The id of the alternative ``step`` away (-1 the previous, +1 the next), or None past either end."""
    index = message.sibling_index + step
    return message.siblings[index] if 0 <= index < len(message.siblings) else None


def question_of(messages: list[Message], index: int) -> Message | None:
    """The question to regenerate for the chatbot's message ``index`` (a question, or the answer to one)."""
    shown = shown_messages(messages)
    if not 0 <= index < len(shown):
        return None
    message = shown[index]
    if message.role == "user":
        return message
    return next((m for m in shown[:index][::-1] if m.id == message.parent_id and m.role == "user"), None)


# --- sources ----------------------------------------------------------------------------------------------------
def sources_of(message: Message) -> list[dict[str, Any]]:
    cited = (message.metadata or {}).get("sources") or []
    return [s for s in cited if isinstance(s, dict)]


def source_title(source: dict[str, Any]) -> str:
    """The page title where the source has one (richer sources), else the document's name."""
    return str(source.get("title") or source.get("name") or source.get("source") or "a document")


def source_label(source: dict[str, Any]) -> str:
    parts = [f"[{source.get('index', '?')}] {source_title(source)}"]
    if source.get("section"):
        parts.append(f"§ {source['section']}")
    if source.get("page") is not None:
        parts.append(f"p. {source['page']}")
    return " · ".join(parts)


def sources_line(sources: list[dict[str, Any]]) -> str:
    return "**Sources:** " + " · ".join(escape(source_label(s)) for s in sources)


def document_link(source: dict[str, Any]) -> str | None:
    """The original document in the library (``.../content`` downloads it as it was ingested)."""
    repository, document = source.get("repository_id"), source.get("document_id")
    if not repository or not document:
        return None
    return f"/api/repositories/{quote(str(repository), safe='')}/documents/{quote(str(document), safe='')}/content"


def source_preview(source: dict[str, Any]) -> str:
    """A source opened: where it is from, the passage, and the link to the original."""
    lines = [f"### {escape(source_label(source))}"]
    where = [f"repository `{source['repository_id']}`"] if source.get("repository_id") else []
    if source.get("collection_id"):
        where.append(f"collection `{source['collection_id']}`")
    if source.get("source"):
        where.append(f"`{source['source']}`")
    if isinstance(source.get("score"), int | float):
        where.append(f"score {source['score']:.2f}")
    if where:
        lines.append(" · ".join(where))
    text = str(source.get("text") or "").strip()
    if text:
        cut = text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + " …"
        # Quoted as plain text: a passage's own Markdown headings or lists would otherwise take over the preview.
        quoted = (escape(line).lstrip().replace("#", "\\#", 1) for line in cut.splitlines() if line.strip())
        lines.append("\n".join("> " + line for line in quoted))
    links = []
    if link := document_link(source):
        links.append(f'<a href="{escape(link)}" download class="lisa-source-download">Download the original</a>')
    if isinstance(source.get("link"), str) and source["link"].startswith(("https://", "http://")):
        links.append(f'<a href="{escape(source["link"])}" target="_blank" rel="noopener">Open the page</a>')
    if links:
        lines.append(" · ".join(links))
    return "\n\n".join(lines)


def last_cited(messages: list[Message]) -> list[dict[str, Any]]:
    """The sources of the latest answer on the branch that cited any."""
    for message in shown_messages(messages)[::-1]:
        if message.role == "assistant" and (cited := sources_of(message)):
            return cited
    return []


# --- summaries --------------------------------------------------------------------------------------------------
def summary_progress(name: str, data: dict[str, Any]) -> str:
    """One event of a summary's stream as the line the user reads."""
    if name == "plan":
        return f"Summarising with `{data.get('model', '?')}`: {data.get('pieces', '?')} piece(s) to read…"
    if name == "progress":
        stage = "reading" if data.get("stage") == "map" else "combining"
        return f"Summarising… {stage}, step {data.get('step', '?')} of {data.get('of', '?')}"
    if name == "error":
        return f"**The summary failed:** {data.get('detail', 'the model failed')}"
    return ""
