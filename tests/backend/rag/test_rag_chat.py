"""RAG in /v1/chat/completions from the openai SDK: context in the prompt, sources with the answer and the stream."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.backend.rag.helpers import fresh_repository, ingest
from tests.support import LisaServer

REPO = "rag-chat"
FACT = b"The on-call rotation for the database team changes every Tuesday at 09:00 UTC."
OTHER = b"Cafeteria menus are published on the intranet every Friday afternoon."


@pytest.fixture(scope="module")
def repo(admin: httpx.Client) -> str:
    fresh_repository(admin, REPO)
    job = ingest(admin, REPO, {"oncall.txt": FACT, "menu.txt": OTHER})
    assert job["status"] == "completed"
    return REPO


@pytest.fixture(scope="module")
def client(lisa: LisaServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=lisa.url + "/v1", api_key=lisa.token)


def test_answer_carries_sources_and_the_prompt_carries_the_context(client: openai.OpenAI, repo: str) -> None:
    completion = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "When does the database on-call rotation change?"}],
        max_completion_tokens=8,
        extra_body={"rag": {"repositories": [repo], "top_k": 1}},
    )
    sources: list[dict[str, Any]] = (completion.model_extra or {})["sources"]
    assert [s["name"] for s in sources] == ["oncall.txt"]
    assert sources[0]["index"] == 1 and sources[0]["repository_id"] == repo and sources[0]["text"] == FACT.decode()
    # The retrieved passage went to the model: the prompt grew by about its length.
    plain = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "When does the database on-call rotation change?"}],
        max_completion_tokens=8,
    )
    assert completion.usage is not None and plain.usage is not None
    assert completion.usage.prompt_tokens >= plain.usage.prompt_tokens + 15
    assert "sources" not in (plain.model_extra or {})


def test_stream_ends_with_a_sources_chunk(client: openai.OpenAI, repo: str) -> None:
    stream = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "Where are cafeteria menus published?"}],
        max_completion_tokens=6,
        stream=True,
        extra_body={"rag": {"repositories": [repo], "top_k": 2}},
    )
    chunks = list(stream)
    with_sources = [c for c in chunks if (c.model_extra or {}).get("sources")]
    assert len(with_sources) == 1 and with_sources[0] is chunks[-1] and chunks[-1].choices == []
    names = [s["name"] for s in (chunks[-1].model_extra or {})["sources"]]
    assert names[0] == "menu.txt" and set(names) == {"menu.txt", "oncall.txt"}
    assert any(c.choices and c.choices[0].delta.content for c in chunks[:-1])


def test_a_stream_asking_for_usage_ends_sources_usage_done(client: openai.OpenAI, repo: str) -> None:
    """The order OpenAI's clients need: content, then LISA's sources chunk, the usage chunk last before [DONE]."""
    chunks = list(
        client.chat.completions.create(
            model="gemma3-270m",
            messages=[{"role": "user", "content": "Where are cafeteria menus published?"}],
            max_completion_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"rag": {"repositories": [repo], "top_k": 1}},
        )
    )
    *content, sources, usage = chunks
    assert sources.choices == [] and [s["name"] for s in (sources.model_extra or {})["sources"]] == ["menu.txt"]
    assert usage.choices == [] and usage.usage is not None and usage.usage.completion_tokens == 4
    assert usage.usage.prompt_tokens > 40  # the retrieved passage and the instruction went into the prompt
    assert all("sources" not in (c.model_extra or {}) and c.usage is None for c in content)
    assert len({c.id for c in chunks}) == 1


def test_a_long_message_is_searched_by_its_end(client: openai.OpenAI, repo: str) -> None:
    """The search query is the last 4,000 characters of the user's message; the whole message goes to the model."""
    question = "Earlier notes, not the question. " * 300 + "When does the database on-call rotation change?"
    assert len(question) > 8000
    messages: list[Any] = [{"role": "user", "content": question}]
    rag = {"rag": {"repositories": [repo], "top_k": 1}}
    completion = client.chat.completions.create(
        model="gemma3-270m", messages=messages, max_completion_tokens=2, extra_body=rag
    )
    assert [s["name"] for s in (completion.model_extra or {})["sources"]] == ["oncall.txt"]
    chunks = list(
        client.chat.completions.create(
            model="gemma3-270m", messages=messages, max_completion_tokens=2, stream=True, extra_body=rag
        )
    )
    assert [s["name"] for s in (chunks[-1].model_extra or {})["sources"]] == ["oncall.txt"]


@pytest.mark.parametrize(
    ("rag", "fragment"),
    [
        ({"repositories": []}, "rag.repositories"),
        ({"repositories": ["rag-chat"], "top_k": 0}, "rag.top_k"),
        ({"repositories": ["rag-chat"], "surprise": 1}, "rag.surprise"),
        ("rag-chat", "invalid 'rag' field"),
    ],
)
def test_bad_rag_field_is_a_clear_400(client: openai.OpenAI, repo: str, rag: Any, fragment: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gemma3-270m", messages=[{"role": "user", "content": "hi"}], extra_body={"rag": rag}
        )
    assert fragment in str(caught.value)


def test_unknown_repository_is_404_and_rag_elsewhere_is_400(client: openai.OpenAI, repo: str) -> None:
    with pytest.raises(openai.NotFoundError, match="repository 'nope' not found"):
        client.chat.completions.create(
            model="gemma3-270m",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"rag": {"repositories": ["nope"]}},
        )
    with pytest.raises(openai.BadRequestError, match="chat/completions only"):
        client.embeddings.create(model="minilm-l6-v2", input="x", extra_body={"rag": {"repositories": [repo]}})


RUNBOOK = (
    b"# Database runbook\n\nHow the database team works.\n\n## Rotations\n\n### On-call\n\n"
    b"The pager for the storage cluster passes to the next engineer every Wednesday at 14:00 UTC, after the handover "
    b"call, and the outgoing engineer writes the handover note before it. The note lists open incidents, alerts that "
    b"fired overnight and any maintenance planned for the week, so the next engineer starts with the whole picture.\n\n"
    b"## Backups\n\n"
    b"Snapshots are taken nightly and kept for thirty days.\n"
)


def test_sources_cite_title_section_passage_and_a_link_to_the_original(
    admin: httpx.Client, lisa: LisaServer, client: openai.OpenAI, repo: str
) -> None:
    """A source says which page and section it comes from, quotes a passage, and links to the original: the link
    downloads the uploaded file for a user who may see the repository, and is 404 for one who may not."""
    from tests.backend.chat.helpers import new_session, new_user, send

    fresh_repository(admin, "rag-cite", allowed_groups=["cite-team"])
    job = ingest(admin, "rag-cite", {"runbook.md": RUNBOOK}, chunking='{"strategy": "markdown"}')
    assert job["status"] == "completed", job
    member = new_user(admin, lisa, "cite-member", ["cite-team"])
    outsider = new_user(admin, lisa, "cite-outsider")
    answer = member.post(
        "/v1/chat/completions",
        json={
            "model": "gemma3-270m",
            "messages": [{"role": "user", "content": "When does the storage pager pass to the next engineer?"}],
            "max_completion_tokens": 4,
            "rag": {"repositories": ["rag-cite"], "top_k": 1},
        },
    )
    assert answer.status_code == 200, answer.text
    [source] = answer.json()["sources"]
    assert source["title"] == "Database runbook"
    assert source["section"] == "Database runbook > Rotations > On-call"
    assert source["passage"].startswith("Database runbook > Rotations > On-call The pager for the storage cluster")
    assert source["passage"].endswith("\u2026") and len(source["passage"]) <= 301  # cut near 300 characters
    assert "writes the handover note" in source["text"]
    assert source["url"] == f"/api/repositories/rag-cite/documents/{source['document_id']}/content"
    original = member.get(source["url"])
    assert original.status_code == 200 and original.content == RUNBOOK
    assert "runbook.md" in original.headers["content-disposition"]
    assert outsider.get(source["url"]).status_code == 404
    # A chat turn with RAG records the same citation on the answer it stores.
    session = new_session(member, title="cite", model="gemma3-270m")
    turn = send(member, session["id"], {"content": "When does the storage pager pass on?", "arguments": {
        "max_tokens": 4}, "rag": {"repositories": ["rag-cite"], "top_k": 1}})  # fmt: skip
    assert turn.status == 200 and turn.one("done")["status"] == "complete"
    stored = member.get(f"/api/sessions/{session['id']}").json()["messages"][1]["metadata"]["sources"]
    assert [(s["title"], s["section"], s["url"]) for s in stored] == [
        (source["title"], source["section"], source["url"])
    ]
    # A page without headings (plain text) is cited by its name, with no section.
    plain = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "When does the database on-call rotation change?"}],
        max_completion_tokens=4,
        extra_body={"rag": {"repositories": [repo], "top_k": 1}},
    )
    [cited] = (plain.model_extra or {})["sources"]
    assert cited["title"] == "oncall.txt" and cited["section"] is None and cited["passage"] == FACT.decode()
    admin.delete("/api/repositories/rag-cite")


HTML_RUNBOOK = (
    b"<html><head><meta charset='utf-8'><title>Storage runbook</title></head><body>"
    b"<h1>Storage runbook</h1><p>How the storage team keeps the cluster healthy.</p>"
    b"<h2>Backups</h2><p>Snapshots are taken nightly and kept for thirty days.</p>"
    b"<h2>Failover</h2><h3>Promoting a replica</h3>"
    b"<p>To promote the standby, run the promote command on the replica and repoint the writers.</p>"
    b"</body></html>"
)


def test_an_html_pages_sources_cite_its_heading_trail(admin: httpx.Client, client: openai.OpenAI) -> None:
    """HTML headings (h1-h4) give each chunk its section (the trail where the chunk starts), cited like a markdown
    heading trail."""
    fresh_repository(admin, "rag-cite-html")
    job = ingest(
        admin,
        "rag-cite-html",
        {"runbook.html": HTML_RUNBOOK},
        chunking='{"strategy": "tokens", "size": 24, "overlap": 2}',
    )
    assert job["status"] == "completed", job
    answer = client.chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "How do I promote the standby replica?"}],
        max_completion_tokens=4,
        extra_body={"rag": {"repositories": ["rag-cite-html"], "top_k": 1}},
    )
    [source] = (answer.model_extra or {})["sources"]
    assert source["title"] == "Storage runbook"
    assert source["section"] == "Storage runbook > Failover > Promoting a replica"
    assert "run the promote command" in source["text"]
    assert "Failover" not in source["text"]  # the trail is cited, not written into the chunk's text
