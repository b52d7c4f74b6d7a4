"""The shape of each ``/v1`` route's request body, checked by the gateway before anything goes upstream.

An upstream handed a body of the wrong shape answers with its own 500 (llama.cpp given ``"messages": "x"``), which
the caller would see as a 502. Here such a body is a 400 ``invalid_request_error`` whose ``param`` names the
offending field in OpenAI's notation (``messages``, ``messages[0].role``, ``tools[1].function.name``), in OpenAI's
words. What is checked: required fields, the JSON type of every documented field, the ranges OpenAI documents
(``temperature`` 0-2, ``n`` >= 1, ...), message roles and content parts. What is not: values only a model can
judge (a tool's JSON schema, an image URL's reachability) and content-part types beyond OpenAI's (servers such
as vLLM accept more; they pass through). ``null`` stands for "not given", as OpenAI accepts it.

Hand-written rather than a pydantic model of OpenAI's types: the checks run on every request; a few dict
lookups per field keep them in microseconds (see docs/gateway.md), and the messages name the field as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from backend.errors import BadRequest

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
Check = Callable[[str, Any], None]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_type(param: str, expected: str, value: Any) -> BadRequest:
    return BadRequest(f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.", param=param)


def missing(param: str) -> BadRequest:
    return BadRequest(f"Missing required parameter: '{param}'.", param=param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bounded(param: str, value: Any, low: float | None, high: float | None, noun: str) -> None:
    if low is not None and value < low:
        raise BadRequest(f"Invalid '{param}': {noun} below minimum value. Expected a value >= {low:g}, but got "
                         f"{value} instead.", param=param)  # fmt: skip
    if high is not None and value > high:
        raise BadRequest(f"Invalid '{param}': {noun} above maximum value. Expected a value <= {high:g}, but got "
                         f"{value} instead.", param=param)  # fmt: skip


def number(low: float | None = None, high: float | None = None) -> Check:
    def check(param: str, value: Any) -> None:
        if not _is_number(value):
            raise invalid_type(param, "a decimal", value)
        _bounded(param, value, low, high, "decimal")

    return check


def integer(low: int | None = None, high: int | None = None) -> Check:
    def check(param: str, value: Any) -> None:
        if not _is_int(value):
            raise invalid_type(param, "an integer", value)
        _bounded(param, value, low, high, "integer")

    return check


def one_of(*values: str) -> Check:
    def check(param: str, value: Any) -> None:
        if not isinstance(value, str):
            raise invalid_type(param, "a string", value)
        if value not in values:
            quoted = [f"'{v}'" for v in values]
            supported = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + \
                (" and " if len(quoted) == 2 else ", and ") + quoted[-1]  # fmt: skip
            raise BadRequest(f"Invalid value: '{value[:100]}'. Supported values are: {supported}.", param=param)

    return check


def boolean(param: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise invalid_type(param, "a boolean", value)


def string(param: str, value: Any) -> None:
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)


def obj(param: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)


def string_or_object(param: str, value: Any) -> None:
    if not isinstance(value, str | dict):
        raise invalid_type(param, "a string or an object", value)


def stop(param: str, value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise invalid_type(param, "a string or an array of strings", value)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid_type(f"{param}[{i}]", "a string", item)


def typed_object(param: str, value: Any) -> None:
    """An object with a string ``type`` (``response_format``)."""
    obj(param, value)
    kind = value.get("type")
    if kind is None:
        raise missing(f"{param}.type")
    string(f"{param}.type", kind)


def stream_options(param: str, value: Any) -> None:
    obj(param, value)
    if value.get("include_usage") is not None:
        boolean(f"{param}.include_usage", value["include_usage"])


def tools(param: str, value: Any) -> None:
    if not isinstance(value, list):
        raise invalid_type(param, "an array of objects", value)
    for i, tool in enumerate(value):
        where = f"{param}[{i}]"
        typed_object(where, tool)
        if tool["type"] == "function":
            function = tool.get("function")
            if function is None:
                raise missing(f"{where}.function")
            obj(f"{where}.function", function)
            if function.get("name") is None:
                raise missing(f"{where}.function.name")
            string(f"{where}.function.name", function["name"])


def content_parts(param: str, parts: list[Any]) -> None:
    for i, part in enumerate(parts):
        where = f"{param}[{i}]"
        typed_object(where, part)
        kind = part["type"]
        field = {"text": "text", "refusal": "refusal", "image_url": "image_url", "input_audio": "input_audio",
                 "file": "file"}.get(kind)  # fmt: skip
        if field is None:
            continue  # a part type some servers know (video_url, audio_url, ...): theirs to judge
        value = part.get(field)
        if value is None:
            raise missing(f"{where}.{field}")
        if kind in ("text", "refusal"):
            string(f"{where}.{field}", value)
        elif kind == "image_url" and isinstance(value, dict):
            if value.get("url") is None:
                raise missing(f"{where}.image_url.url")
            string(f"{where}.image_url.url", value["url"])
        elif kind != "image_url":
            obj(f"{where}.{field}", value)
        else:
            string(f"{where}.{field}", value)  # the URL as a bare string, as some clients send it


def message(param: str, value: Any) -> None:
    obj(param, value)
    role = value.get("role")
    if role is None:
        raise missing(f"{param}.role")
    one_of(*ROLES)(f"{param}.role", role)
    content = value.get("content")
    if content is None:
        if role == "assistant" or (role == "function" and "content" in value):
            pass  # an assistant turn that only calls tools; a function result may be null
        else:
            raise missing(f"{param}.content")
    elif isinstance(content, list):
        content_parts(f"{param}.content", content)
    elif not isinstance(content, str):
        raise invalid_type(f"{param}.content", "a string or an array of content parts", content)
    for key in ("name", "tool_call_id", "refusal"):
        if value.get(key) is not None:
            string(f"{param}.{key}", value[key])
    if role == "tool" and value.get("tool_call_id") is None:
        raise missing(f"{param}.tool_call_id")
    if role == "function" and value.get("name") is None:
        raise missing(f"{param}.name")
    calls = value.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise invalid_type(f"{param}.tool_calls", "an array of objects", calls)
        for i, call in enumerate(calls):
            obj(f"{param}.tool_calls[{i}]", call)


def messages(param: str, value: Any) -> None:
    if not isinstance(value, list):
        raise invalid_type(param, "an array of objects", value)
    if not value:
        raise BadRequest(f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an "
                         "empty array instead.", param=param)  # fmt: skip
    for i, item in enumerate(value):
        message(f"{param}[{i}]", item)


def _token_list(param: str, value: list[Any], nested: bool) -> None:
    for i, item in enumerate(value):
        if nested:
            if not isinstance(item, list) or not all(_is_int(t) for t in item):
                raise invalid_type(f"{param}[{i}]", "an array of integers", item)
        elif not _is_int(item):
            raise invalid_type(f"{param}[{i}]", "an integer", item)


def text_or_tokens(param: str, value: Any) -> None:
    """``prompt`` and ``input``: a string, or an array of strings, of token ids, or of arrays of token ids."""
    if isinstance(value, str):
        return
    expected = "a string, an array of strings, an array of integers or an array of arrays of integers"
    if not isinstance(value, list):
        raise invalid_type(param, expected, value)
    if not value:
        raise BadRequest(f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an "
                         "empty array instead.", param=param)  # fmt: skip
    first = value[0]
    if isinstance(first, str):
        for i, item in enumerate(value):
            string(f"{param}[{i}]", item)
    elif _is_int(first) or isinstance(first, list):
        _token_list(param, value, isinstance(first, list))
    else:
        raise invalid_type(f"{param}[0]", "a string, an integer or an array of integers", first)


def functions(param: str, value: Any) -> None:
    if not isinstance(value, list):
        raise invalid_type(param, "an array of objects", value)
    for i, function in enumerate(value):
        obj(f"{param}[{i}]", function)
        if function.get("name") is None:
            raise missing(f"{param}[{i}].name")
        string(f"{param}[{i}].name", function["name"])


def strings(param: str, value: Any) -> None:
    if not isinstance(value, list):
        raise invalid_type(param, "an array of strings", value)
    for i, item in enumerate(value):
        string(f"{param}[{i}]", item)


SAMPLING: dict[str, Check] = {
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "presence_penalty": number(-2, 2),
    "frequency_penalty": number(-2, 2),
    "seed": integer(),
    "stream": boolean,
    "stream_options": stream_options,
    "stop": stop,
    "user": string,
    "logit_bias": obj,
    "top_k": integer(),
    "min_p": number(0, 1),
    "repetition_penalty": number(0),
}

SHAPES: dict[str, tuple[tuple[str, ...], dict[str, Check]]] = {
    "chat/completions": (
        ("messages",),
        {
            **SAMPLING,
            "messages": messages,
            "n": integer(1, 128),
            "max_tokens": integer(1),
            "max_completion_tokens": integer(1),
            "logprobs": boolean,
            "top_logprobs": integer(0, 20),
            "response_format": typed_object,
            "tools": tools,
            "tool_choice": string_or_object,
            "parallel_tool_calls": boolean,
            "store": boolean,
            "functions": functions,
            "function_call": string_or_object,
            "reasoning_effort": string,
            "service_tier": string,
            "modalities": strings,
        },
    ),
    "completions": (
        ("prompt",),
        {
            **SAMPLING,
            "prompt": text_or_tokens,
            "n": integer(1, 128),
            "best_of": integer(0, 20),
            "max_tokens": integer(0),
            "echo": boolean,
            "logprobs": integer(0, 5),
            "suffix": string,
        },
    ),
    "embeddings": (
        ("input",),
        {
            "input": text_or_tokens,
            "encoding_format": one_of("float", "base64"),
            "dimensions": integer(1),
            "user": string,
        },
    ),
    "images/generations": (
        ("prompt",),
        {
            "prompt": string,
            "n": integer(1, 10),
            "size": string,
            "quality": string,
            "style": string,
            "response_format": one_of("url", "b64_json"),
            "output_format": string,
            "output_compression": integer(0, 100),
            "partial_images": integer(0, 3),
            "background": string,
            "moderation": string,
            "stream": boolean,
            "user": string,
        },
    ),
}


def check_shape(endpoint: str, payload: Mapping[str, Any]) -> None:
    """400 naming the first field whose value has the wrong shape (the field allowlist has run before)."""
    required, checks = SHAPES[endpoint]
    for name in required:
        if payload.get(name) is None:
            raise missing(name)
    for name, value in payload.items():
        if value is not None and (check := checks.get(name)) is not None:
            check(name, value)
    if payload.get("stream_options") is not None and payload.get("stream") is not True:
        raise BadRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                         param="stream_options")  # fmt: skip
