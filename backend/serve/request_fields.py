"""The request fields each ``/v1`` route accepts: the one allowlist between a client's body and an upstream.

Only these top-level keys may reach a model server or LiteLLM. Anything else is refused with 400, in OpenAI's own
words ("Unrecognized request argument supplied: ..."), naming the field: LiteLLM lets call-time keys such as
``api_base``, ``api_key``, ``aws_*``, ``vertex_*``, ``fallbacks`` or ``mock_response`` override a deployment's
settings, so an unknown key is never harmless. The check is a set difference over the body's top-level keys.

The lists are OpenAI's documented request fields for each route, plus LISA's own ``rag`` (chat only) and a short
list of sampling parameters that self-hosted servers (vLLM, llama.cpp, TGI) accept beyond OpenAI's. ``metadata``
is documented by OpenAI (labels for stored completions) but refused: LiteLLM reads a call's ``metadata`` itself
(its callbacks, tag routing and the Router's own bookkeeping), so it would reach LiteLLM's internals rather than
the provider, and LISA has no stored-completions API to read the labels back. ``docs/gateway.md`` shows these
lists; ``python -m backend.serve.request_fields`` prints that section, and a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.errors import BadRequest

# Sampling parameters of vLLM, llama.cpp and TGI's OpenAI-compatible APIs (LiteLLM forwards them as well).
SAMPLING_EXTENSIONS = frozenset({"top_k", "min_p", "repetition_penalty"})

CHAT_COMPLETIONS = frozenset(
    {
        "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "modalities", "moderation", "n", "parallel_tool_calls", "prediction",
        "presence_penalty", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
        "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store",
        "stream", "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
        "verbosity", "web_search_options",
    }
)  # fmt: skip
COMPLETIONS = frozenset(
    {
        "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
        "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user",
    }
)  # fmt: skip
EMBEDDINGS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
IMAGES_GENERATIONS = frozenset(
    {
        "model", "prompt", "background", "complexity", "frame_count", "frame_duration_ms", "moderation", "n",
        "output_compression", "output_format", "partial_images", "quality", "response_format", "safety_identifier",
        "size", "stream", "style", "svg", "user",
    }
)  # fmt: skip

# Fields LISA itself consumes before the body goes upstream.
LISA_FIELDS: dict[str, frozenset[str]] = {"chat/completions": frozenset({"rag"})}

ALLOWED: dict[str, frozenset[str]] = {
    "chat/completions": CHAT_COMPLETIONS | SAMPLING_EXTENSIONS | LISA_FIELDS["chat/completions"],
    "completions": COMPLETIONS | SAMPLING_EXTENSIONS,
    "embeddings": EMBEDDINGS,
    "images/generations": IMAGES_GENERATIONS,
}

# Never allowed on any route, whatever the lists above say (the test suite checks each reaches nothing).
NEVER = frozenset(
    {
        "api_base", "base_url", "api_key", "api_version", "custom_llm_provider", "fallbacks", "num_retries",
        "extra_headers", "extra_body", "headers", "timeout", "metadata", "litellm_params", "mock_response",
        "mock_testing_fallbacks", "aws_access_key_id", "aws_secret_access_key", "aws_region_name",
        "vertex_project", "vertex_location", "vertex_credentials",
    }
)  # fmt: skip


class UnrecognizedArgument(BadRequest):
    """400 naming the first field no route allows (OpenAI's ``param``)."""


def check_fields(endpoint: str, payload: Mapping[str, Any]) -> None:
    """Refuse a body with any top-level key the route does not allow."""
    unknown = payload.keys() - ALLOWED[endpoint]
    if not unknown:
        return
    names = sorted(unknown)
    noun = "argument" if len(names) == 1 else "arguments"
    message = f"Unrecognized request {noun} supplied: {', '.join(names)}"
    if "rag" in unknown:
        message += " (the 'rag' field is accepted on /v1/chat/completions only)"
    raise UnrecognizedArgument(message, names[0])


def provider_kwargs(endpoint: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a LiteLLM call: allowlisted fields only, never ``model``/``stream``/LISA's own."""
    allowed = ALLOWED[endpoint] - LISA_FIELDS.get(endpoint, frozenset()) - {"model", "stream"}
    return {k: v for k, v in payload.items() if k in allowed}


def docs_section() -> str:
    """The Markdown table of docs/gateway.md (between its ``allowlist`` markers)."""
    rows = [
        ("`/v1/chat/completions`", CHAT_COMPLETIONS, "plus LISA's `rag` and the sampling extensions"),
        ("`/v1/completions`", COMPLETIONS, "plus the sampling extensions"),
        ("`/v1/embeddings`", EMBEDDINGS, ""),
        ("`/v1/images/generations`", IMAGES_GENERATIONS, ""),
    ]
    lines = ["| route | accepted request fields | also |", "|---|---|---|"]
    for route, fields, also in rows:
        lines.append(f"| {route} | {', '.join(f'`{f}`' for f in sorted(fields))} | {also} |")
    lines += [
        "",
        f"Sampling extensions (vLLM, llama.cpp, TGI): {', '.join(f'`{f}`' for f in sorted(SAMPLING_EXTENSIONS))}.",
        "",
        "Never accepted, on any route: " + ", ".join(f"`{f}`" for f in sorted(NEVER)) + ", and any `aws_*`, "
        "`vertex_*` or `mock_*` field.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(docs_section(), end="")
