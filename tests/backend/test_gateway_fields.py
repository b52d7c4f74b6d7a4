"""Only allowlisted request fields reach an upstream: a client cannot point LISA (and its provider keys) elsewhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from backend.serve.request_fields import ALLOWED, NEVER, docs_section
from tests.servers.capture_server import fingerprint
from tests.support import ROOT, LisaServer, Proc, start_module

PROVIDER_KEY = "sk-provider-key-known-to-the-test-4f9a"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """Where a hostile client tries to send LISA's requests: it must never hear from LISA."""
    proc = start_module("tests.servers.capture_server", tmp_path_factory.mktemp("listener"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """The real upstream of the test models: records what LISA sends it."""
    proc = start_module("tests.servers.capture_server", tmp_path_factory.mktemp("upstream"))
    yield proc
    proc.stop()


def captured(proc: Proc) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(proc.url + "/_captured").json()
    return data


def forget(*procs: Proc) -> None:
    for proc in procs:
        httpx.delete(proc.url + "/_captured")


@pytest.fixture(scope="module")
def models(admin: httpx.Client, upstream: Proc) -> dict[str, str]:
    bodies: list[dict[str, Any]] = [
        {"id": "fields-third-party", "type": "textgen", "hosting": "third_party", "provider_model": "openai/captured",
         "base_url": upstream.url + "/v1", "api_key": PROVIDER_KEY},
        {"id": "fields-internal", "type": "textgen", "hosting": "internal", "base_url": upstream.url + "/v1",
         "api_key": PROVIDER_KEY},
        {"id": "fields-embed", "type": "embedding", "hosting": "internal", "base_url": upstream.url + "/v1",
         "streaming": False},
    ]  # fmt: skip
    for body in bodies:
        admin.delete(f"/api/models/{body['id']}")
        assert admin.post("/api/models", json=body).status_code == 201
    return {"third_party": "fields-third-party", "internal": "fields-internal"}


@pytest.fixture(scope="module")
def user(admin: httpx.Client, lisa: LisaServer) -> Iterator[httpx.Client]:
    token = admin.post("/api/tokens", json={"name": "fields", "username": "fields-user", "groups": []}).json()
    with lisa.client(str(token["token"])) as client:
        yield client


def dangerous(listener: str) -> list[tuple[str, Any]]:
    return [
        ("api_base", listener + "/v1"),
        ("base_url", listener + "/v1"),
        ("api_key", "sk-chosen-by-the-attacker"),
        ("api_version", "2024-01-01"),
        ("custom_llm_provider", "anthropic"),
        ("aws_access_key_id", "AKIAEXAMPLE"),
        ("aws_secret_access_key", "secret"),
        ("aws_region_name", "us-east-1"),
        ("aws_bedrock_runtime_endpoint", listener),
        ("vertex_project", "someone-elses"),
        ("vertex_location", "us-central1"),
        ("vertex_credentials", "{}"),
        ("fallbacks", [{"model": "openai/captured", "api_base": listener + "/v1"}]),
        ("mock_response", "pwned"),
        ("mock_testing_fallbacks", True),
        ("num_retries", 50),
        ("extra_headers", {"X-Forwarded-Host": listener}),
        ("extra_body", {"api_base": listener + "/v1"}),
        ("timeout", 0.001),
        ("metadata", {"tags": ["free"], "model_group": "x"}),
        ("litellm_params", {"api_base": listener + "/v1"}),
    ]


@pytest.mark.parametrize("hosting", ["third_party", "internal"])
def test_dangerous_fields_are_refused_and_reach_nobody(
    user: httpx.Client, models: dict[str, str], listener: Proc, upstream: Proc, hosting: str
) -> None:
    forget(listener, upstream)
    for field, value in dangerous(listener.url):
        for stream in (False, True):
            body = {"model": models[hosting], "messages": MESSAGES, field: value, "stream": stream}
            resp = user.post("/v1/chat/completions", json=body)
            assert resp.status_code == 400, (field, resp.text)
            error = resp.json()["error"]
            assert error["type"] == "invalid_request_error" and error["param"] == field, error
            assert error["message"] == f"Unrecognized request argument supplied: {field}"
    assert captured(listener) == []
    assert captured(upstream) == []  # refused before any upstream call, not merely stripped


def test_every_route_refuses_unknown_fields_naming_them(user: httpx.Client, models: dict[str, str]) -> None:
    resp = user.post(
        "/v1/chat/completions",
        json={"model": models["internal"], "messages": MESSAGES, "zeta": 1, "api_key": "x", "temperature": 0},
    )
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["param"] == "api_key"
    assert error["message"] == "Unrecognized request arguments supplied: api_key, zeta"
    for path, body in [
        ("/v1/completions", {"model": models["internal"], "prompt": "x", "api_base": "http://x"}),
        ("/v1/embeddings", {"model": "fields-embed", "input": "x", "api_base": "http://x"}),
        ("/v1/images/generations", {"model": "painter", "prompt": "x", "api_base": "http://x"}),
    ]:
        resp = user.post(path, json=body)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "api_base", (path, resp.text)


@pytest.mark.parametrize("hosting", ["third_party", "internal"])
def test_ordinary_sdk_calls_keep_working_and_their_fields_arrive(
    lisa: LisaServer, user: httpx.Client, models: dict[str, str], upstream: Proc, hosting: str
) -> None:
    token = user.headers["Authorization"].removeprefix("Bearer ")
    client = openai.OpenAI(base_url=lisa.url + "/v1", api_key=token, max_retries=0, timeout=60)
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    forget(upstream)
    completion = client.chat.completions.create(  # type: ignore[call-overload]  # plain dicts for typed params
        model=models[hosting],
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        temperature=0.2,
        top_p=0.9,
        max_tokens=7,
        n=2,
        seed=3,
        stop=["\n\n"],
        user="end-user-1",
        presence_penalty=0.1,
        frequency_penalty=0.1,
        logit_bias={"50256": -100},
        response_format={"type": "json_object"},
        tools=[tool],
        tool_choice="auto",
        extra_body={"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.1},
    )
    assert completion.choices[0].message.content == "captured" and len(completion.choices) == 2
    [request] = captured(upstream)
    sent = orjson.loads(request["body"])
    assert request["headers"]["Authorization"] == fingerprint(f"Bearer {PROVIDER_KEY}")  # the registered key
    expected: dict[str, Any] = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 7, "n": 2, "seed": 3, "top_k": 5, "min_p": 0.05,
                "repetition_penalty": 1.1}  # fmt: skip
    if hosting == "internal":  # bytes passed through as sent (LiteLLM keeps `user` to itself)
        expected["user"] = "end-user-1"
    assert {k: sent.get(k) for k in expected} == expected
    assert sent["tools"][0]["function"]["name"] == "lookup" and sent["response_format"] == {"type": "json_object"}
    chunks = list(
        client.chat.completions.create(
            model=models[hosting],
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "captured"


def test_ordinary_completions_and_embeddings_keep_working(
    lisa: LisaServer, user: httpx.Client, models: dict[str, str], upstream: Proc
) -> None:
    token = user.headers["Authorization"].removeprefix("Bearer ")
    client = openai.OpenAI(base_url=lisa.url + "/v1", api_key=token, max_retries=0, timeout=60)
    text = client.completions.create(model=models["internal"], prompt="x", max_tokens=3, echo=False, user="u")
    assert text.choices[0].text == "captured"
    vectors = client.embeddings.create(model="fields-embed", input=["a", "b"], encoding_format="float", user="u")
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 8


def test_allowlist_is_the_openai_sdks_request_fields_less_metadata() -> None:
    """The installed openai SDK documents each route's fields; a new one fails here until someone decides on it."""
    from openai.types import completion_create_params, embedding_create_params, image_generate_params
    from openai.types.chat import completion_create_params as chat_create_params

    sdk: dict[str, Any] = {
        "chat/completions": chat_create_params.CompletionCreateParamsStreaming,
        "completions": completion_create_params.CompletionCreateParamsStreaming,
        "embeddings": embedding_create_params.EmbeddingCreateParams,
        "images/generations": image_generate_params.ImageGenerateParamsStreaming,
    }
    for endpoint, params in sdk.items():
        documented = params.__required_keys__ | params.__optional_keys__
        assert documented - {"metadata"} <= ALLOWED[endpoint], (endpoint, documented - ALLOWED[endpoint])


def test_allowlist_never_names_a_dangerous_field() -> None:
    for endpoint, fields in ALLOWED.items():
        assert not fields & NEVER, endpoint
        assert not [f for f in fields if f.startswith(("aws_", "vertex_", "mock_", "litellm"))], endpoint


def test_docs_show_the_allowlist_as_the_code_has_it() -> None:
    text = (ROOT / "docs" / "gateway.md").read_text()
    match = re.search(r"<!-- allowlist:start -->\n(.*?)<!-- allowlist:end -->", text, re.S)
    assert match, "docs/gateway.md lost its allowlist markers"
    assert match.group(1) == docs_section(), "regenerate with: python -m backend.serve.request_fields"
    assert "docs/gateway.md" in Path(ROOT / "README.md").read_text()
