"""The official openai SDK and LangChain, unmodified, against `lisa serve` and its real local models."""

from __future__ import annotations

import math

import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from tests.support import LisaServer

CHAT = "gemma3-270m"
EMBED = "minilm-l6-v2"


@pytest.fixture(scope="module")
def client(lisa: LisaServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=lisa.url + "/v1", api_key=lisa.token, max_retries=0, timeout=120)


def test_models_list_has_the_local_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {CHAT, EMBED} <= ids
    assert client.models.retrieve(CHAT).id == CHAT


def test_chat_completion(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8, temperature=0
    )
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content
    assert resp.usage is not None and resp.usage.completion_tokens > 0 and resp.usage.prompt_tokens > 0


def test_chat_completion_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Count to three."}], max_tokens=12, stream=True
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3 and text.strip()
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_text_completion(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=CHAT, prompt="The capital of France is", max_tokens=6, temperature=0)
    assert resp.choices[0].text
    assert resp.usage is not None and resp.usage.completion_tokens > 0


def test_embeddings_default_base64_and_float(client: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it; float must give the same vectors.
    texts = ["reset a forgotten password", "change the password I forgot", "bake sourdough bread"]
    b64 = client.embeddings.create(model=EMBED, input=texts)
    flt = client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    assert [d.index for d in b64.data] == [0, 1, 2]
    for a, b in zip(b64.data, flt.data, strict=True):
        assert len(a.embedding) == 384
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding, strict=True)) < 1e-6
    v = [d.embedding for d in flt.data]

    def cos(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True)) / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))

    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.2
    assert b64.usage.prompt_tokens > 0


def test_sdk_errors_carry_status_and_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert "no-such-model" in str(missing.value)
    with pytest.raises(openai.BadRequestError) as wrong_type:
        client.embeddings.create(model=CHAT, input="hello")
    assert "textgen" in str(wrong_type.value)
    bad = openai.OpenAI(base_url=client.base_url, api_key="lisa_not-a-real-token", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_langchain_chat_and_embeddings(lisa: LisaServer) -> None:
    llm = ChatOpenAI(model=CHAT, base_url=lisa.url + "/v1", api_key=lisa.token, max_tokens=8, max_retries=0)
    message = llm.invoke("Say hello.")
    assert isinstance(message.content, str) and message.content
    streamed = "".join(str(chunk.content) for chunk in llm.stream("Say hi."))
    assert streamed
    emb = OpenAIEmbeddings(  # type: ignore[call-arg]  # pydantic aliases mypy does not see
        model=EMBED, base_url=lisa.url + "/v1", api_key=lisa.token, check_embedding_ctx_length=False, max_retries=0
    )
    vectors = emb.embed_documents(["first document", "second document"])
    assert len(vectors) == 2 and all(len(v) == 384 for v in vectors)
    assert len(emb.embed_query("a question")) == 384
