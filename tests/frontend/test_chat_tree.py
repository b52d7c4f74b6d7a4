"""What the chat tab shows of a message tree, cited sources and a summary's progress (plain functions)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pytest

from frontend.chat_tree import (
    branch_points,
    document_link,
    last_cited,
    question_of,
    render,
    sibling_at,
    source_label,
    source_preview,
    summary_progress,
)
from frontend.schemas import Message
from frontend.tabs.chat_rag import rag_body
from frontend.tabs.chat_turn import prepare_edit, prepare_regenerate, prepare_retry


def message(id: str, role: str, content: str, parent: str | None = None, **extra: Any) -> Message:
    return Message.model_validate({"id": id, "role": role, "content": content, "parent_id": parent, **extra})


SOURCE = {
    "index": 1, "repository_id": "zoo handbook", "collection_id": "default", "document_id": "doc/1",
    "name": "quokka.md", "source": "upload://alice/quokka.md", "page": 2, "score": 0.8123,
    "text": "Quokkas <b>smile</b>.\nThey live on Rottnest.",
}  # fmt: skip


def branch() -> list[Message]:
    return [
        message("q1", "user", "Hi", None, siblings=["q1"], sibling_index=0),
        message("a1", "assistant", "Hello", "q1", siblings=["a0", "a1"], sibling_index=1),
        message("s", "system", "summary", "a1"),
        message("q2", "user", "Tell me about quokkas", "a1", siblings=["q2"]),
        message("a2", "assistant", "They smile [1].", "q2", siblings=["a2"], metadata={"sources": [SOURCE]}),
    ]


def test_the_branch_is_rendered_with_its_alternatives_and_sources() -> None:
    history = render(branch(), show_meta=False)
    assert [h["role"] for h in history] == ["user", "assistant", "user", "assistant"]  # no system message
    assert history[1]["content"] == "Hello\n\n<sub>\u2039 2/2 \u203a</sub>"
    assert "**Sources:** [1] quokka.md · p. 2" in history[3]["content"]
    assert "\u2039" not in history[0]["content"]


def test_alternatives_are_listed_and_stepped_through() -> None:
    messages = branch()
    assert branch_points(messages) == [("#2 Answer \u2039 2/2 \u203a: Hello", "a1")]
    assert sibling_at(messages[1], -1) == "a0"
    assert sibling_at(messages[1], 1) is None  # past the newest
    assert sibling_at(messages[0], -1) is None


def test_the_question_to_regenerate_is_found_from_either_message() -> None:
    messages = branch()
    q1 = question_of(messages, 1)
    q2a, q2b = question_of(messages, 3), question_of(messages, 2)
    assert q1 is not None and q1.id == "q1"
    assert q2a is not None and q2b is not None and q2a.id == q2b.id == "q2"
    assert question_of(messages, 9) is None


def test_a_source_opens_with_its_passage_escaped_and_a_link_to_the_library() -> None:
    assert last_cited(branch()) == [SOURCE]
    assert document_link(SOURCE) == "/api/repositories/zoo%20handbook/documents/doc%2F1/content"
    preview = source_preview(SOURCE)
    assert "> Quokkas &lt;b&gt;smile&lt;/b&gt;." in preview and "> They live on Rottnest." in preview
    assert 'href="/api/repositories/zoo%20handbook/documents/doc%2F1/content" download' in preview
    assert "score 0.81" in preview
    # Richer sources (a page title, a section, a web link) show what they carry; a bad link scheme is dropped.
    rich = {**SOURCE, "title": "Quokka care", "section": "Feeding", "link": "https://zoo.example/quokka"}
    assert source_label(rich) == "[1] Quokka care · § Feeding · p. 2"
    assert 'href="https://zoo.example/quokka"' in source_preview(rich)
    assert "javascript" not in source_preview({**SOURCE, "link": "javascript:alert(1)"})
    # A source without ids has no download link, and nothing breaks.
    assert "Download" not in source_preview({"index": 2, "name": "x"})


def test_summary_progress_lines_and_the_rag_field() -> None:
    assert "4 piece(s)" in summary_progress("plan", {"pieces": 4, "model": "m"})
    assert summary_progress("progress", {"stage": "map", "step": 2, "of": 4}) == "Summarising… reading, step 2 of 4"
    assert "combining" in summary_progress("progress", {"stage": "reduce", "step": 1, "of": 1})
    assert "failed" in summary_progress("error", {"detail": "upstream 502"})
    assert rag_body("", ["c"], 3) is None
    assert rag_body("zoo", [], 3.0) == {"repositories": ["zoo"], "top_k": 3}
    assert rag_body("zoo", ["a"], None) == {"repositories": ["zoo"], "top_k": 4, "collections": ["a"]}


def test_regenerate_and_edit_name_the_right_place_in_the_tree() -> None:
    shown = [m.model_dump(mode="json") for m in branch()]
    # Regenerate: the last question, keeping the messages up to it.
    assert prepare_regenerate(shown) == {"content": None, "keep": 3, "parent": "q2"}
    retry = gr.RetryData(None, {"index": 1, "value": "Hello"})
    assert prepare_retry(shown, retry) == {"content": None, "keep": 1, "parent": "q1"}
    # Edit: the edited question goes under the original's parent (None for the first: a new first message).
    edit = gr.EditData(None, {"index": 2, "value": " About wombats? ", "previous_value": "Tell me about quokkas"})
    assert prepare_edit(shown, edit) == {"content": "About wombats?", "keep": 2, "parent": "a1"}
    first = gr.EditData(None, {"index": 0, "value": "Hey", "previous_value": "Hi"})
    assert prepare_edit(shown, first) == {"content": "Hey", "keep": 0, "parent": None}
    answer = gr.EditData(None, {"index": 1, "value": "x", "previous_value": "Hello"})
    with pytest.raises(gr.Error, match="Only a question"):
        prepare_edit(shown, answer)
