"""`/v1` as the unmodified openai SDK and LangChain see it: every route, streamed and not, and every error class
as the SDK's own exception with its fields.

The local models (gemma3-270m through llama.cpp, MiniLM) show what a fresh `lisa serve` does; the faulty upstream
(tests/servers/faulty_upstream.py) plays upstreams that fail, compress, or report usage oddly; a peer process with
an injected fault (tests/servers/raising) shows the catch-all.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import openai
import orjson
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from openai.types.chat import ChatCompletionMessageParam

from backend.db.engine import asyncpg_dsn
from tests.servers.faulty_upstream import RETRY_AFTER, SPLIT_USAGE
from tests.servers.raising.sitecustomize import INJECTED
from tests.support import ROOT, LisaServer, Proc, free_port, start_lisa, start_module

CHAT = "gemma3-270m"
EMBED = "minilm-l6-v2"
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
FAULTY = ["ok", "no-usage", "split-usage", "gzip", "gzip-always", "error-401", "error-403", "error-404",
          "error-429", "error-500", "long", "slow", "stall-mid-stream"]  # fmt: skip


def sdk(server: LisaServer, token: str | None = None, timeout: float = 120) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=token or server.token, max_retries=0, timeout=timeout)


@pytest.fixture(scope="module")
def client(lisa: LisaServer) -> openai.OpenAI:
    return sdk(lisa)


@pytest.fixture(scope="module")
def faulty(admin: httpx.Client, faulty_upstream: Proc) -> None:
    """conf-<behaviour>: internal (byte pass-through); conf-tp-<behaviour>: third_party (LiteLLM)."""
    bodies: list[dict[str, Any]] = [
        *[{"id": f"conf-{b}", "hosting": "internal", "base_url": faulty_upstream.url + "/v1", "upstream_model": b}
          for b in FAULTY],
        *[{"id": f"conf-tp-{b}", "hosting": "third_party", "provider_model": f"openai/{b}",
           "base_url": faulty_upstream.url + "/v1", "api_key": "unused"} for b in ("ok", "no-usage", "error-429")],
        {"id": "conf-down", "hosting": "internal", "base_url": f"http://127.0.0.1:{free_port()}/v1"},
        {"id": "conf-stopped", "hosting": "internal", "base_url": faulty_upstream.url + "/v1"},
    ]  # fmt: skip
    for body in bodies:
        admin.delete(f"/api/models/{body['id']}")
        resp = admin.post("/api/models", json={"type": "textgen", **body})
        assert resp.status_code == 201, resp.text


def new_user(admin: httpx.Client, lisa: LisaServer, name: str, **limits: Any) -> openai.OpenAI:
    token = admin.post("/api/tokens", json={"name": name, "username": name, "groups": []}).json()["token"]
    if limits:
        assert admin.put(f"/api/limits/user/{name}", json=limits).status_code == 200
    return sdk(lisa, token)


def usage_rows(client: openai.OpenAI, model: str, count: int = 1, wait: float = 5) -> list[dict[str, Any]]:
    """The caller's usage of one model, once ``count`` requests are in (metering is written in batches)."""
    me = str(client.base_url).removesuffix("/").removesuffix("/v1") + "/api/usage/me"
    deadline = time.monotonic() + wait
    while True:
        rows = httpx.get(me, headers={"Authorization": f"Bearer {client.api_key}"}, timeout=30).json()["rows"]
        mine = [r for r in rows if r["model"] == model]
        if sum(r["requests"] for r in mine) >= count or time.monotonic() > deadline:
            return mine
        time.sleep(0.1)


# --- every route, streamed and not, from a fresh `lisa serve`'s own models -------------------------------------
def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {CHAT, EMBED} <= ids
    model = client.models.retrieve(CHAT)
    assert model.id == CHAT and model.object == "model"


def test_chat_completion(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Name a colour."}],
                                          max_tokens=4, temperature=0)  # fmt: skip
    assert resp.object == "chat.completion" and resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content
    assert resp.usage is not None and resp.usage.completion_tokens > 0 and resp.usage.prompt_tokens > 0


def test_chat_stream_ends_with_a_usage_chunk_when_asked(client: openai.OpenAI) -> None:
    """llama.cpp sends no usage in a stream: LISA adds the chunk OpenAI would send, from what it metered."""
    chunks = list(client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Count."}],
                                                 max_tokens=4, stream=True, stream_options={"include_usage": True}))  # fmt: skip
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    *content, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 4 and last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in content) and last.id == content[0].id
    assert "".join(c.choices[0].delta.content or "" for c in content if c.choices)
    plain = list(client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Count."}],
                                                max_tokens=4, stream=True))  # fmt: skip
    assert all(c.usage is None and c.choices for c in plain)  # not asked: no usage chunk, as from OpenAI


def test_text_completion_streamed_and_not(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=CHAT, prompt="The capital of France is", max_tokens=4, temperature=0)
    assert resp.object == "text_completion" and resp.choices[0].text
    assert resp.usage is not None and resp.usage.completion_tokens > 0
    chunks = list(client.completions.create(model=CHAT, prompt="One, two,", max_tokens=4, stream=True,
                                            stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[-1].object == "text_completion" and chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert "".join(c.choices[0].text for c in chunks[:-1] if c.choices)


def test_embeddings_base64_and_float(client: openai.OpenAI) -> None:
    texts = ["reset a forgotten password", "change the password I forgot", "bake sourdough bread"]
    b64 = client.embeddings.create(model=EMBED, input=texts)  # the SDK asks for base64 and decodes it
    flt = client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    assert [d.index for d in b64.data] == [0, 1, 2] and b64.usage.prompt_tokens > 0
    for a, b in zip(b64.data, flt.data, strict=True):
        assert len(a.embedding) == 384
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding, strict=True)) < 1e-6
    v = [d.embedding for d in flt.data]

    def cos(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True)) / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))

    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.2


def test_image_generation(admin: httpx.Client, client: openai.OpenAI, image_server: Proc) -> None:
    admin.delete("/api/models/conf-painter")
    body = {"id": "conf-painter", "type": "imagegen", "hosting": "internal", "base_url": image_server.url + "/v1"}
    assert admin.post("/api/models", json=body).status_code == 201
    result = client.images.generate(model="conf-painter", prompt="a lighthouse", n=1, size="256x256",
                                    response_format="b64_json")  # fmt: skip
    assert result.data is not None and result.data[0].b64_json
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="conf-painter", prompt="x", n=11)
    assert caught.value.param == "n"


def test_langchain_chat_and_embeddings(lisa: LisaServer) -> None:
    llm = ChatOpenAI(model=CHAT, base_url=lisa.url + "/v1", api_key=lisa.token, max_tokens=4, max_retries=0,
                     stream_usage=True)  # fmt: skip
    message = llm.invoke("Say hello.")
    assert isinstance(message.content, str) and message.content
    assert message.usage_metadata is not None and message.usage_metadata["output_tokens"] > 0
    merged: AIMessageChunk | None = None
    for chunk in llm.stream("Say hi."):
        assert isinstance(chunk, AIMessageChunk)
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and str(merged.content)
    assert merged.usage_metadata is not None and merged.usage_metadata["output_tokens"] == 4  # LISA's usage chunk
    emb = OpenAIEmbeddings(  # type: ignore[call-arg]  # pydantic aliases mypy does not see
        model=EMBED, base_url=lisa.url + "/v1", api_key=lisa.token, check_embedding_ctx_length=False, max_retries=0
    )
    assert [len(v) for v in emb.embed_documents(["first document", "second"])] == [384, 384]
    assert len(emb.embed_query("a question")) == 384


# --- usage: what the client sees, what is metered ---------------------------------------------------------------
@pytest.mark.parametrize("model", ["conf-no-usage", "conf-tp-no-usage"])
def test_a_stream_without_upstream_usage_gets_lisas_chunk_and_is_metered_as_estimated(
    admin: httpx.Client, lisa: LisaServer, faulty: None, model: str
) -> None:
    user = new_user(admin, lisa, f"conf-est-{model}")
    chunks = list(user.chat.completions.create(model=model, messages=HI, stream=True,
                                               stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello world"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    if model == "conf-no-usage":  # three content deltas; LiteLLM counts tokens its own way
        assert usage.completion_tokens == 3
    [row] = usage_rows(user, model)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)


@pytest.mark.parametrize("model", ["conf-ok", "conf-tp-ok"])
def test_a_client_that_did_not_ask_sees_no_usage_and_the_upstreams_count_is_metered(
    admin: httpx.Client, lisa: LisaServer, faulty: None, model: str
) -> None:
    user = new_user(admin, lisa, f"conf-real-{model}")
    chunks = list(user.chat.completions.create(model=model, messages=HI, stream=True))
    assert all(c.usage is None and c.choices for c in chunks), chunks[-2:]  # as from OpenAI
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "hello world"
    [row] = usage_rows(user, model)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (1, 2)  # the upstream's count, not an estimate


def test_lisa_asks_the_upstream_for_usage_and_identity_encoding(
    admin: httpx.Client, client: openai.OpenAI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    capture = start_module("tests.servers.capture_server", tmp_path_factory.mktemp("capture"))
    try:
        admin.delete("/api/models/conf-captured")
        body = {"id": "conf-captured", "type": "textgen", "hosting": "internal", "base_url": capture.url + "/v1"}
        assert admin.post("/api/models", json=body).status_code == 201
        list(client.chat.completions.create(model="conf-captured", messages=HI, stream=True))
        client.chat.completions.create(model="conf-captured", messages=HI)
        captured = httpx.get(capture.url + "/_captured").json()  # also the registration's context-window probe
        streamed, plain = [c for c in captured if c["path"].endswith("/chat/completions")]
        assert orjson.loads(streamed["body"])["stream_options"] == {"include_usage": True}
        assert "stream_options" not in orjson.loads(plain["body"])
        assert streamed["headers"]["Accept-Encoding"] == plain["headers"]["Accept-Encoding"] == "identity"
    finally:
        capture.stop()


def test_usage_split_across_reads_with_details_first_is_counted_whole(
    admin: httpx.Client, lisa: LisaServer, faulty: None
) -> None:
    user = new_user(admin, lisa, "conf-split")
    chunks = list(user.chat.completions.create(model="conf-split-usage", messages=HI, stream=True,
                                               stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == SPLIT_USAGE["completion_tokens"]
    resp = user.chat.completions.create(model="conf-split-usage", messages=HI)
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    [row] = usage_rows(user, "conf-split-usage", count=2)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (2 * 11, 2 * 3)


@pytest.mark.parametrize("model", ["conf-gzip", "conf-gzip-always"])
def test_a_compressing_upstream_cannot_hand_the_client_gzip(client: openai.OpenAI, faulty: None, model: str) -> None:
    resp = client.chat.completions.create(model=model, messages=HI)
    assert resp.choices[0].message.content == "hello world"
    chunks = list(client.chat.completions.create(model=model, messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello world"


def test_a_client_that_leaves_closes_the_upstream_and_pays_what_it_received(
    admin: httpx.Client, lisa: LisaServer, faulty: None, faulty_upstream: Proc
) -> None:
    user = new_user(admin, lisa, "conf-gone", budget_tokens=100_000, budget_period="day")
    before = len(httpx.get(faulty_upstream.url + "/_aborted").json())
    received = 0
    with user.chat.completions.create(model="conf-long", messages=HI, stream=True) as stream:
        for chunk in stream:
            received += sum(1 for c in chunk.choices if c.delta.content)
            if received >= 20:
                break  # and hang up: the upstream would go on for 2,000 tokens (about 20 s)
    deadline = time.monotonic() + 5
    while len(aborted := httpx.get(faulty_upstream.url + "/_aborted").json()) == before:
        assert time.monotonic() < deadline, "the upstream never saw LISA close the connection"
        time.sleep(0.1)
    assert aborted[-1]["tokens_sent"] < 400  # closed within a few seconds, not at the end
    [row] = usage_rows(user, "conf-long")
    assert received <= row["completion_tokens"] <= aborted[-1]["tokens_sent"]


# --- every error class, as the SDK's own exceptions ------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "param", "words"),
    [
        (lambda c: c.chat.completions.create(model=CHAT, messages="not a list"), "messages", "expected an array"),
        (lambda c: c.chat.completions.create(model=CHAT, messages=[{"content": "x"}]), "messages[0].role", "Missing"),
        (lambda c: c.chat.completions.create(model=CHAT, messages=HI, temperature=7), "temperature", "maximum"),
        (lambda c: c.chat.completions.create(model=CHAT, messages=HI, n=0), "n", "minimum"),
        (lambda c: c.completions.create(model=CHAT, prompt={"x": 1}), "prompt", "expected a string"),
        (lambda c: c.embeddings.create(model=EMBED, input=[]), "input", "empty array"),
        (lambda c: c.chat.completions.create(model=CHAT, messages=HI, extra_body={"api_base": "http://x"}),
         "api_base", "Unrecognized request argument"),
        (lambda c: c.embeddings.create(model=CHAT, input="x"), "model", "textgen"),
    ],
)  # fmt: skip
def test_400_names_the_param(client: openai.OpenAI, call: Any, param: str, words: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        call(client)
    error = caught.value
    assert error.status_code == 400 and error.type == "invalid_request_error", error
    assert error.param == param and words in error.message, error.message


def test_a_malformed_body_never_reaches_the_upstream_as_a_5xx(admin: httpx.Client) -> None:
    """llama.cpp answered these with its own 500 (a 502 to the caller); LISA refuses them first."""
    for body in ({"model": CHAT, "messages": "not a list", "stream": True},
                 {"model": CHAT, "messages": [{"role": "user", "content": {"text": "x"}}]},
                 {"model": CHAT, "messages": HI, "stop": 3},
                 {"model": CHAT, "messages": HI, "stream": "yes"}):  # fmt: skip
        resp = admin.post("/v1/chat/completions", json=body)
        assert resp.status_code == 400 and resp.json()["error"]["param"], resp.text


def test_401_404_413(lisa: LisaServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        sdk(lisa, "lisa_not-a-real-token").models.list()
    assert unauthorized.value.status_code == 401 and unauthorized.value.type == "authentication_error"
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="no-such-model", messages=HI, stream=stream)
        assert "no-such-model" in missing.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    with pytest.raises(openai.APIStatusError) as too_large:
        client.embeddings.create(model=EMBED, input="a" * (17 * 1024 * 1024))
    assert too_large.value.status_code == 413 and "limit" in too_large.value.message


def test_429_from_limits_and_from_upstreams_carries_retry_after(
    admin: httpx.Client, lisa: LisaServer, faulty: None
) -> None:
    user = new_user(admin, lisa, "conf-rpm", rpm=1)
    user.chat.completions.create(model="conf-ok", messages=HI)
    with pytest.raises(openai.RateLimitError) as limited:
        user.chat.completions.create(model="conf-ok", messages=HI)
    assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    for model in ("conf-error-429", "conf-tp-error-429"):
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as upstream:
                sdk(lisa).chat.completions.create(model=model, messages=HI, stream=stream)
            assert upstream.value.response.headers["retry-after"] == str(RETRY_AFTER), model
            assert "rate limiting" in upstream.value.message


@pytest.mark.parametrize(
    ("model", "status", "words"),
    [
        ("conf-error-401", 502, "rejected the stored credentials (status 401)"),
        ("conf-error-403", 502, "rejected the stored credentials (status 403)"),
        ("conf-error-404", 502, "failed with status 404"),
        ("conf-error-500", 502, "failed with status 500"),
        ("conf-down", 502, "unreachable"),
    ],
)
def test_upstream_failures_are_5xx_in_lisas_words(
    client: openai.OpenAI, faulty: None, model: str, status: int, words: str
) -> None:
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=model, messages=HI, stream=stream)
        assert caught.value.status_code == status and words in caught.value.message, caught.value.message
        assert caught.value.type == "upstream_error"


def set_status_as_the_lifecycle_does(lisa: LisaServer, model_id: str, status: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(lisa.database_url))
        try:
            await conn.execute("UPDATE models SET status = $2 WHERE id = $1", model_id, status)
            await conn.execute("SELECT pg_notify('lisa_changes', 'models')")
        finally:
            await conn.close()

    asyncio.run(run())


def test_503_for_a_model_out_of_service(lisa: LisaServer, client: openai.OpenAI, faulty: None) -> None:
    set_status_as_the_lifecycle_does(lisa, "conf-stopped", "Stopped")
    deadline = time.monotonic() + 10
    while True:  # until the change reaches the server's route table
        try:
            client.chat.completions.create(model="conf-stopped", messages=HI)
        except openai.InternalServerError as exc:
            assert exc.status_code == 503 and "not in service" in exc.message and exc.type == "service_unavailable"
            return
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_504_when_the_upstream_does_not_answer_in_time(lisa_peer: LisaServer, faulty: None) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(lisa_peer).chat.completions.create(model="conf-slow", messages=HI)
    assert caught.value.status_code == 504 and "did not answer within 2s" in caught.value.message
    with pytest.raises(openai.APIError) as stalled:  # a stream that stalls after it began ends with an error event
        list(sdk(lisa_peer).chat.completions.create(model="conf-stall-mid-stream", messages=HI, stream=True))
    assert stalled.value.type == "upstream_timeout" and "stalled" in stalled.value.message


# --- a connect timeout, and the catch-all: a peer with a short connect timeout and an injected fault -------------
@pytest.fixture(scope="module")
def raising(lisa: LisaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LisaServer]:
    path = os.pathsep.join([str(ROOT / "tests" / "servers" / "raising"), os.environ.get("PYTHONPATH", str(ROOT))])
    server = start_lisa(
        tmp_path_factory.mktemp("raising") / "data",
        local_models=False,
        database_url=lisa.database_url,
        token=lisa.token,
        env={"LISA_BOOTSTRAP_ADMIN": "false", "LISA_UPSTREAM_CONNECT_TIMEOUT": "1", "PYTHONPATH": path},
    )
    yield server
    server.proc.stop()


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listen queue is full: connection attempts get no answer at all (SYNs dropped)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    yield port
    for sock in [*fillers, server]:
        sock.close()


def test_a_connect_timeout_says_so(admin: httpx.Client, raising: LisaServer, unanswered_port: int) -> None:
    admin.delete("/api/models/conf-blackhole")
    body = {"id": "conf-blackhole", "type": "textgen", "hosting": "internal",
            "base_url": f"http://127.0.0.1:{unanswered_port}/v1"}  # fmt: skip
    assert admin.post("/api/models", json=body).status_code == 201
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(raising).chat.completions.create(model="conf-blackhole", messages=HI)
    assert caught.value.status_code == 504 and caught.value.type == "upstream_timeout"
    assert "connecting to the upstream timed out after 1s" in caught.value.message
    assert time.monotonic() - started < 5


def test_an_unexpected_exception_is_openais_500_with_a_request_id(raising: LisaServer, faulty: None) -> None:
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            sdk(raising).chat.completions.create(
                model="conf-ok", messages=HI, stream=stream, user="raise-before-answer"
            )
        error = caught.value
        assert error.status_code == 500 and error.type == "server_error", error.message
        assert "request id req_" in error.message and INJECTED not in error.message
        assert error.response.headers["content-type"] == "application/json"
    log = raising.proc.log.read_text(errors="replace")
    request_id = error.message.split("request id ")[1].split(")")[0]
    assert request_id in log and INJECTED in log and "Traceback" in log


def test_an_unexpected_exception_mid_stream_ends_it_with_an_error_event(raising: LisaServer, faulty: None) -> None:
    body = {"model": "conf-ok", "messages": HI, "stream": True, "user": "raise-mid-stream"}
    with raising.client().stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert b"[DONE]" not in [e.encode() for e in events]
    error = orjson.loads(events[-1])["error"]
    assert error["type"] == "server_error" and "request id req_" in error["message"]
    assert INJECTED not in str(events)
    # and the server goes on serving
    assert sdk(raising).chat.completions.create(model="conf-ok", messages=HI).choices[0].message.content
