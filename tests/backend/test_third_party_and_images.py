"""Providers that need translation go through LiteLLM's Router; image models pass through to an images server."""

from __future__ import annotations

import base64
import struct

import httpx
import openai
import pytest

from tests.support import LisaServer, Proc, free_port


@pytest.fixture(scope="module")
def client(lisa: LisaServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=lisa.url + "/v1", api_key=lisa.token, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def via_litellm(admin: httpx.Client) -> str:
    """gemma3-270m registered a second time as a third-party model: LiteLLM's openai provider translates."""
    llama = admin.get("/api/models/gemma3-270m").json()["base_url"]
    admin.delete("/api/models/gemma-via-litellm")
    body = {
        "id": "gemma-via-litellm",
        "type": "textgen",
        "hosting": "third_party",
        "provider_model": "openai/gemma3-270m",
        "base_url": llama,
        "api_key": "unused-by-llama",
    }
    assert admin.post("/api/models", json=body).status_code == 201
    return "gemma-via-litellm"


def test_third_party_chat_through_litellm(client: openai.OpenAI, via_litellm: str) -> None:
    resp = client.chat.completions.create(
        model=via_litellm, messages=[{"role": "user", "content": "Say yes."}], max_tokens=5
    )
    assert resp.choices[0].message.content
    assert resp.usage is not None and resp.usage.completion_tokens > 0


def test_third_party_streaming_through_litellm(client: openai.OpenAI, via_litellm: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model=via_litellm, messages=[{"role": "user", "content": "Say yes."}], max_tokens=5, stream=True
        )
    )
    assert len(chunks) >= 2
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_third_party_unreachable_is_502(admin: httpx.Client, client: openai.OpenAI) -> None:
    admin.delete("/api/models/dead-provider")
    body = {
        "id": "dead-provider",
        "type": "textgen",
        "hosting": "third_party",
        "provider_model": "openai/whatever",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",
        "api_key": "x",
    }
    assert admin.post("/api/models", json=body).status_code == 201
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="dead-provider", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502 and "dead-provider" in str(err.value)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_image_generation_passes_through(admin: httpx.Client, client: openai.OpenAI, image_server: Proc) -> None:
    admin.delete("/api/models/painter")
    body = {"id": "painter", "type": "imagegen", "hosting": "internal", "base_url": image_server.url + "/v1"}
    created = admin.post("/api/models", json=body)
    assert created.status_code == 201 and created.json()["streaming"] is False
    result = client.images.generate(model="painter", prompt="a lighthouse at dusk", n=2, size="256x256")
    assert result.data is not None and len(result.data) == 2
    for image in result.data:
        assert image.b64_json is not None
        assert png_size(base64.b64decode(image.b64_json)) == (256, 256)
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="painter", prompt="x", size="13x13")
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="gemma3-270m", prompt="x")
