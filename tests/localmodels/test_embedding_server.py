"""The local embedding server, started as a real process and spoken to over HTTP."""

from __future__ import annotations

import base64
import signal
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.support import start_module

MODEL_ID = "minilm-test"


@pytest.fixture(scope="module", params=["openvino", "torch"])
def server_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("emb")
    proc = start_module(
        "backend.localmodels.embedding_server",
        tmp,
        *("--model-id", MODEL_ID, "--threads", "2", "--backend", request.param, "--cache-dir", str(tmp / "cache")),
    )
    assert httpx.get(f"{proc.url}/health").json()["backend"] == request.param
    yield proc.url
    proc.stop(signal.SIGTERM)


def embed(url: str, inputs: str | list[str], **extra: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/embeddings", json={"model": MODEL_ID, "input": inputs, **extra}, timeout=60)


def vectors_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    return np.array([d["embedding"] for d in data], dtype=np.float32)


def test_float_vectors_are_384_long_and_unit_norm(server_url: str) -> None:
    response = embed(server_url, ["The cat sat on the mat.", "Quarterly revenue grew by 12%."])
    body = response.json()
    assert body["object"] == "list" and body["model"] == MODEL_ID
    vectors = vectors_of(response)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]


def test_usage_counts_tokens_not_inputs(server_url: str) -> None:
    short = embed(server_url, "hello").json()["usage"]["prompt_tokens"]
    long = embed(server_url, "hello there, this sentence has quite a few more tokens").json()["usage"]
    assert 0 < short < long["prompt_tokens"]


def test_base64_decodes_to_the_float_vector(server_url: str) -> None:
    text = "Vectors travel as little-endian float32."
    as_float = vectors_of(embed(server_url, text))[0]
    response = embed(server_url, text, encoding_format="base64")
    assert response.status_code == 200
    encoded = response.json()["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert decoded.shape == (384,)
    np.testing.assert_allclose(decoded, as_float, atol=1e-6)


def test_paraphrases_are_closer_than_unrelated_text(server_url: str) -> None:
    a, b, unrelated = vectors_of(
        embed(
            server_url,
            [
                "How do I reset my password?",
                "Steps to change a forgotten password",
                "The tide comes in at noon.",
            ],
        )
    )
    assert float(a @ b) > float(a @ unrelated) + 0.2


def test_batch_order_is_preserved(server_url: str) -> None:
    texts = [f"document number {i} about topic {i * 7 % 5}" for i in range(40)]
    batch = vectors_of(embed(server_url, texts))
    singles = np.array([vectors_of(embed(server_url, texts[i]))[0] for i in (0, 17, 39)])
    np.testing.assert_allclose(batch[[0, 17, 39]], singles, atol=1e-5)


def test_concurrent_requests_each_get_their_own_vectors(server_url: str) -> None:
    import concurrent.futures

    topics = ("cats", "dogs", "fish", "birds")
    texts = [f"concurrent request {i} talks about {topics[i % 4]}" for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda t: vectors_of(embed(server_url, t))[0], texts))
    together = vectors_of(embed(server_url, texts))
    np.testing.assert_allclose(np.array(results), together, atol=1e-5)


def assert_openai_error(response: httpx.Response, param: str | None) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    return str(error["message"])


@pytest.mark.parametrize("tokens", [[101, 2023, 102], [[101, 2023], [102]]])
def test_token_arrays_are_refused_with_an_openai_error(server_url: str, tokens: list[object]) -> None:
    message = assert_openai_error(
        httpx.post(f"{server_url}/v1/embeddings", json={"model": "x", "input": tokens}), "input"
    )
    assert "token arrays" in message.lower() and "text" in message.lower()


@pytest.mark.parametrize("inputs", ["", [], ["fine", ""]])
def test_empty_input_is_refused(server_url: str, inputs: str | list[str]) -> None:
    assert_openai_error(embed(server_url, inputs), "input")


def test_too_many_inputs_and_wrong_dimensions_are_refused(server_url: str) -> None:
    assert "2048" in assert_openai_error(embed(server_url, ["x"] * 2049), "input")
    assert_openai_error(embed(server_url, "x", dimensions=256), "dimensions")
    assert embed(server_url, "x", dimensions=384).status_code == 200
    assert_openai_error(embed(server_url, "x", encoding_format="int8"), "encoding_format")


def test_malformed_json_is_refused(server_url: str) -> None:
    response = httpx.post(
        f"{server_url}/v1/embeddings", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_openai_error(response, None)


def test_models_lists_the_configured_id(server_url: str) -> None:
    body = httpx.get(f"{server_url}/v1/models").json()
    assert [m["id"] for m in body["data"]] == [MODEL_ID]


def test_official_openai_sdk_works(server_url: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0)
    texts = ["first text", "second text"]
    result = client.embeddings.create(model=MODEL_ID, input=texts)
    got = np.array([d.embedding for d in result.data], dtype=np.float32)
    np.testing.assert_allclose(got, vectors_of(embed(server_url, texts)), atol=1e-6)
    assert result.usage.prompt_tokens > 0
    assert result.model == MODEL_ID


def test_rerank_speaks_tei_and_orders_by_relevance(server_url: str) -> None:
    texts = ["Quarterly revenue grew by 12%.", "A cat was sitting on the rug.", "Dogs bark at the postman."]
    resp = httpx.post(f"{server_url}/rerank", json={"query": "Where did the cat sit?", "texts": texts}, timeout=60)
    assert resp.status_code == 200, resp.text
    ranked = resp.json()
    assert sorted(r["index"] for r in ranked) == [0, 1, 2]
    assert ranked[0]["index"] == 1
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    with_text = httpx.post(
        f"{server_url}/rerank", json={"query": "cat", "texts": texts, "return_text": True}, timeout=60
    ).json()
    assert with_text[0]["text"] == texts[1]
    bad = httpx.post(f"{server_url}/rerank", json={"query": "", "texts": texts}, timeout=60)
    assert bad.status_code == 422 and "required" in bad.json()["error"]
