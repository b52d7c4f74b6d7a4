"""The gateway's pure hot-path functions, without a server: field and shape checks, the SSE parser, usage reading,
the stream filter and the prompt estimate. (Their behaviour through a running server: test_openai_conformance.)"""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest

from backend.errors import BadRequest
from backend.serve.answer import AnswerPlan, Outcome, StreamFilter, ask_upstream_for_usage, with_sources
from backend.serve.budget import estimate_prompt_tokens
from backend.serve.request_fields import check_fields
from backend.serve.request_shape import check_shape
from backend.serve.sse import SseEvent, SseParser
from backend.serve.upstream_errors import retry_after_seconds
from backend.serve.upstream_usage import content_deltas, usage_from_body

MESSAGES = [{"role": "user", "content": "hi"}]


# --- request fields and shape ---------------------------------------------------------------------------------
def test_field_check_names_the_first_unknown_field() -> None:
    check_fields("chat/completions", {"model": "m", "messages": MESSAGES, "rag": {}})
    with pytest.raises(BadRequest) as caught:
        check_fields("embeddings", {"model": "m", "input": "x", "zeta": 1, "api_base": "x"})
    assert caught.value.param == "api_base"
    assert caught.value.message == "Unrecognized request arguments supplied: api_base, zeta"


@pytest.mark.parametrize(
    ("endpoint", "body", "param", "words"),
    [
        ("chat/completions", {"messages": "not a list"}, "messages", "expected an array of objects, but got a string"),
        ("chat/completions", {}, "messages", "Missing required parameter: 'messages'"),
        ("chat/completions", {"messages": []}, "messages", "empty array"),
        ("chat/completions", {"messages": ["hi"]}, "messages[0]", "expected an object, but got a string"),
        ("chat/completions", {"messages": [{"content": "x"}]}, "messages[0].role", "Missing required parameter"),
        ("chat/completions", {"messages": [{"role": "boss", "content": "x"}]}, "messages[0].role",
         "Invalid value: 'boss'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool', and "
         "'function'."),
        ("chat/completions", {"messages": [{"role": "user"}]}, "messages[0].content", "Missing required parameter"),
        ("chat/completions", {"messages": [{"role": "user", "content": 7}]}, "messages[0].content",
         "expected a string or an array of content parts, but got an integer"),
        ("chat/completions", {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
         "messages[0].content[0].text", "Missing required parameter"),
        ("chat/completions", {"messages": [{"role": "user", "content": [{"text": "x"}]}]},
         "messages[0].content[0].type", "Missing required parameter"),
        ("chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
         "messages[0].content[0].image_url.url", "Missing required parameter"),
        ("chat/completions", {"messages": [*MESSAGES, {"role": "tool", "content": "42"}]}, "messages[1].tool_call_id",
         "Missing required parameter"),
        ("chat/completions", {"messages": MESSAGES, "temperature": 3}, "temperature",
         "decimal above maximum value. Expected a value <= 2, but got 3 instead."),
        ("chat/completions", {"messages": MESSAGES, "temperature": "hot"}, "temperature", "expected a decimal"),
        ("chat/completions", {"messages": MESSAGES, "top_p": -0.1}, "top_p", "below minimum value"),
        ("chat/completions", {"messages": MESSAGES, "n": 0}, "n", "integer below minimum value"),
        ("chat/completions", {"messages": MESSAGES, "n": 1.5}, "n", "expected an integer, but got a decimal"),
        ("chat/completions", {"messages": MESSAGES, "max_tokens": 0}, "max_tokens", "below minimum value"),
        ("chat/completions", {"messages": MESSAGES, "max_tokens": True}, "max_tokens", "got a boolean"),
        ("chat/completions", {"messages": MESSAGES, "stream": "yes"}, "stream", "expected a boolean"),
        ("chat/completions", {"messages": MESSAGES, "stop": ["a", 1]}, "stop[1]", "expected a string"),
        ("chat/completions", {"messages": MESSAGES, "stop": 5}, "stop", "a string or an array of strings"),
        ("chat/completions", {"messages": MESSAGES, "tools": {"type": "function"}}, "tools", "an array of objects"),
        ("chat/completions", {"messages": MESSAGES, "tools": [{"type": "function", "function": {}}]},
         "tools[0].function.name", "Missing required parameter"),
        ("chat/completions", {"messages": MESSAGES, "response_format": "json"}, "response_format",
         "expected an object"),
        ("chat/completions", {"messages": MESSAGES, "stream_options": {"include_usage": True}}, "stream_options",
         "only allowed when 'stream' is enabled"),
        ("chat/completions", {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": 1}},
         "stream_options.include_usage", "expected a boolean"),
        ("completions", {"prompt": 5}, "prompt", "expected a string, an array of strings"),
        ("completions", {"prompt": ["a", 2]}, "prompt[1]", "expected a string"),
        ("completions", {"prompt": [[1, 2], [3, "x"]]}, "prompt[1]", "an array of integers"),
        ("completions", {"prompt": "x", "logprobs": 9}, "logprobs", "above maximum value"),
        ("embeddings", {"input": []}, "input", "empty array"),
        ("embeddings", {"input": {"text": "x"}}, "input", "got an object"),
        ("embeddings", {"input": "x", "encoding_format": "hex"}, "encoding_format", "Invalid value: 'hex'"),
        ("embeddings", {"input": "x", "dimensions": 0}, "dimensions", "below minimum value"),
        ("images/generations", {"prompt": ["a cat"]}, "prompt", "expected a string, but got an array"),
        ("images/generations", {"prompt": "a cat", "n": 11}, "n", "above maximum value"),
    ],
)  # fmt: skip
def test_a_body_of_the_wrong_shape_is_refused_naming_the_field(
    endpoint: str, body: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        check_shape(endpoint, {"model": "m", **body})
    assert caught.value.param == param
    assert words in caught.value.message, caught.value.message


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("chat/completions", {"messages": MESSAGES, "temperature": None, "stop": None, "n": None}),
        ("chat/completions", {
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "name": "ann", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                    {"type": "video_url", "video_url": {"url": "x"}},  # beyond OpenAI: the upstream's to judge
                ]},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            "temperature": 0, "top_p": 1, "n": 2, "max_completion_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}, "stop": ["\n"], "seed": 1, "logprobs": True,
            "top_logprobs": 2, "logit_bias": {"1": -100}, "response_format": {"type": "json_object"},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": "auto",
            "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "user": "u",
        }),
        ("completions", {"prompt": "x", "max_tokens": 0, "echo": True, "logprobs": 2, "best_of": 2}),
        ("completions", {"prompt": [1, 2, 3]}),
        ("completions", {"prompt": [[1, 2], [3]]}),
        ("embeddings", {"input": ["a", "b"], "encoding_format": "base64", "dimensions": 8}),
        ("embeddings", {"input": [[1, 2, 3]]}),
        ("images/generations", {"prompt": "a cat", "n": 2, "size": "256x256", "response_format": "b64_json"}),
    ],
)  # fmt: skip
def test_well_formed_bodies_pass(endpoint: str, body: dict[str, Any]) -> None:
    check_shape(endpoint, {"model": "m", **body})


def test_the_shape_check_is_cheap() -> None:
    body = {"model": "m", "messages": [{"role": "system", "content": "s"}, *MESSAGES * 4], "temperature": 0.2,
            "max_tokens": 64, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    runs = 2000
    started = time.perf_counter()
    for _ in range(runs):
        check_fields("chat/completions", body)
        check_shape("chat/completions", body)
    per_request = (time.perf_counter() - started) / runs
    assert per_request < 100e-6, per_request  # measured ~6 us here; the bar is far below the gateway's budget


# --- SSE parser -----------------------------------------------------------------------------------------------
STREAM = (
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"he"}}]}\n\n'
    b": keep-alive\n\n"
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"llo"}}]}\r\n\r\n'
    b"event: note\ndata: first\ndata:second\n\n"
    b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":0},'
    b'"completion_tokens":2,"total_tokens":7}}\r\r'
    b"data: [DONE]\n\n"
)


def parse_in_pieces(data: bytes, cuts: list[int]) -> list[SseEvent]:
    parser, events, last = SseParser(), [], 0
    for cut in [*cuts, len(data)]:
        events += parser.feed(data[last:cut])
        last = cut
    tail = parser.close()
    return events + ([tail] if tail else [])


def test_sse_parser_finds_every_event_with_its_raw_bytes() -> None:
    events = parse_in_pieces(STREAM, [])
    assert b"".join(e.raw for e in events) == STREAM  # a relay that changes nothing changes no byte
    assert [e.data for e in events] == [
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":"he"}}]}',
        None,
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":"llo"}}]}',
        b"first\nsecond",
        STREAM.split(b"data: ")[-2].rstrip(b"\r"),
        b"[DONE]",
    ]


def test_sse_parser_gives_the_same_events_however_the_stream_is_cut() -> None:
    whole = parse_in_pieces(STREAM, [])
    rng = random.Random(7)
    for cut in range(1, len(STREAM)):  # every single cut: inside JSON, between "\r" and "\n", ...
        assert parse_in_pieces(STREAM, [cut]) == whole, cut
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(2, 40)))
        assert parse_in_pieces(STREAM, cuts) == whole, cuts
    assert parse_in_pieces(STREAM, list(range(1, len(STREAM)))) == whole  # one byte a read


def test_sse_parser_returns_an_unterminated_last_event_at_close() -> None:
    parser = SseParser()
    assert parser.feed(b'data: {"a":1}\n\ndata: {"b"') == [SseEvent(b'data: {"a":1}\n\n', b'{"a":1}')]
    assert parser.feed(b":2}") == []
    assert parser.pending == len(b'data: {"b":2}')
    assert parser.close() == SseEvent(b'data: {"b":2}', b'{"b":2}')
    assert parser.close() is None


# --- usage ----------------------------------------------------------------------------------------------------
def test_usage_is_read_whatever_comes_first_in_it() -> None:
    body = orjson.dumps({"id": "x", "choices": [{"message": {"content": '"usage": {"prompt_tokens": 99}'}}],
                         "usage": {"prompt_tokens": 11, "prompt_tokens_details": {"cached_tokens": 4},
                                   "completion_tokens": 3, "total_tokens": 14}})  # fmt: skip
    assert usage_from_body(body) == (11, 3)
    details_last = (
        b'{"usage": {"completion_tokens": 3, "completion_tokens_details": {"a": {"b": 1}}, "prompt_tokens": 8}}'
    )
    assert usage_from_body(details_last) == (8, 3)
    embeddings = b'{"data": [' + b",".join([b'{"embedding": [0.1, 0.2]}'] * 3000) + b'], "usage": {"prompt_tokens": 6}}'
    assert usage_from_body(embeddings) == (6, 0)
    assert usage_from_body(
        b'{"usage": {"prompt_tokens": 5, "completion_tokens": 2}, "data": [' + b"1," * 5000 + b"1]}"
    ) == (5, 2)
    assert usage_from_body(b'{"choices": []}') is None
    assert usage_from_body(b'{"usage": null}') is None
    assert usage_from_body(b'{"usage": {"prompt_tokens": "many", "completion_tokens": -3}}') == (0, 0)


def test_content_deltas_count_every_choice_and_kind() -> None:
    assert content_deltas({"choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]}) == 2
    assert content_deltas({"choices": [{"delta": {"reasoning_content": "r"}}, {"delta": {"content": ""}}]}) == 1
    assert content_deltas({"choices": [{"delta": {"tool_calls": [{"index": 0}]}}]}) == 1
    assert content_deltas({"choices": [{"text": "t"}, {"text": ""}]}) == 1
    assert content_deltas({"choices": "oops"}) == 0 and content_deltas({"choices": [None, 3]}) == 0


# --- stream filter --------------------------------------------------------------------------------------------
def run_filter(stream: bytes, plan: AnswerPlan, estimate: int = 9) -> tuple[bytes, Outcome]:
    outcome = Outcome(200, prompt_tokens=estimate, estimated=True, prompt_estimate=estimate)
    events = StreamFilter(outcome, plan)
    out = b"".join(events.event(e) for e in parse_in_pieces(stream, [])) + events.tail()
    return out, outcome


def data_of(out: bytes) -> list[Any]:
    return [e.data if e.data == b"[DONE]" else orjson.loads(e.data or b"null") for e in parse_in_pieces(out, [])]


CONTENT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":5,"model":"up","choices":[{"index":0,'
    b'"delta":{"content":"he"}}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":5,"model":"up","choices":[{"index":0,'
    b'"delta":{"content":"llo"},"finish_reason":"stop"}]}\n\n'
)
USAGE = b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\n'
DONE = b"data: [DONE]\n\n"


def test_without_usage_from_the_upstream_the_client_that_asked_gets_what_was_metered() -> None:
    out, outcome = run_filter(CONTENT + DONE, AnswerPlan("chat/completions", "m", client_usage=True))
    assert out.startswith(CONTENT) and out.endswith(DONE)
    usage = data_of(out)[-2]
    assert usage == {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "up", "choices": [],
                     "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}}  # fmt: skip
    assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.estimated) == (9, 2, True)


def test_the_upstreams_usage_reaches_only_a_client_that_asked() -> None:
    asked, outcome = run_filter(CONTENT + USAGE + DONE, AnswerPlan("chat/completions", "m", client_usage=True))
    assert asked == CONTENT + USAGE + DONE  # byte for byte
    assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.estimated) == (5, 2, False)
    silent, outcome = run_filter(CONTENT + USAGE + DONE, AnswerPlan("chat/completions", "m"))
    assert silent == CONTENT + DONE
    assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.estimated) == (5, 2, False)
    on_content = CONTENT.replace(b'"finish_reason":"stop"}]}', b'"finish_reason":"stop"}],"usage":{"prompt_tokens":4,'
                                 b'"completion_tokens":2}}')  # fmt: skip
    out, outcome = run_filter(on_content + DONE, AnswerPlan("chat/completions", "m"))
    assert all("usage" not in d for d in data_of(out)[:-1]) and (outcome.prompt_tokens, outcome.estimated) == (4, False)
    out, _ = run_filter(on_content + DONE, AnswerPlan("chat/completions", "m", client_usage=True))
    assert out == on_content + DONE  # the usage came with the last content chunk: no second one


def test_sources_come_before_the_usage_chunk_and_done() -> None:
    sources = [{"index": 1, "name": "a.txt"}]
    for stream in (CONTENT + USAGE + DONE, CONTENT + DONE, CONTENT):
        out, _ = run_filter(stream, AnswerPlan("chat/completions", "m", client_usage=True, sources=sources))
        *_, with_sources, usage, done = data_of(out)
        assert with_sources["sources"] == sources and with_sources["choices"] == [] and with_sources["id"] == "c1"
        assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2
        assert done == b"[DONE]"


def test_non_generating_streams_pass_untouched() -> None:
    stream = b'event: image_generation.completed\ndata: {"type":"x","usage":{"input_tokens":3}}\n\n'
    out, _ = run_filter(stream, AnswerPlan("images/generations", "m", client_usage=False))
    assert out == stream


def test_helpers_for_usage_and_sources() -> None:
    payload: dict[str, Any] = {"stream_options": {"continuous_usage_stats": True}}
    assert ask_upstream_for_usage(payload) and payload["stream_options"] == {"continuous_usage_stats": True,
                                                                              "include_usage": True}  # fmt: skip
    assert not ask_upstream_for_usage(payload)
    assert orjson.loads(with_sources(b'{"id": "x"}', [{"index": 1}])) == {"id": "x", "sources": [{"index": 1}]}
    assert with_sources(b'{"id": "x"}', None) == b'{"id": "x"}'


# --- estimates ------------------------------------------------------------------------------------------------
def test_the_prompt_estimate_reads_text_wherever_it_is() -> None:
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": "a" * 400}]}) == 100 + 3 + 3
    parts = [{"type": "text", "text": "b" * 80}, {"type": "image_url", "image_url": {"url": "x" * 999}}]
    assert estimate_prompt_tokens({"messages": [{"role": "user", "content": parts}]}) == 20 + 6
    assert estimate_prompt_tokens({"prompt": ["a" * 40, "b" * 40]}) == 20
    assert estimate_prompt_tokens({"input": "x"}) == 1


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("7") == 7 and retry_after_seconds("0.2") == 1 and retry_after_seconds(None) == 1
    assert retry_after_seconds("99999") == 3600 and retry_after_seconds("soon") == 1
    assert 1 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") <= 1
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    assert 100 <= retry_after_seconds(later) <= 121
