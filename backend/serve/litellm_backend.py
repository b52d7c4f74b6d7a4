"""Providers that need translation (Bedrock, Anthropic, Vertex, ...) go through LiteLLM's Router.

The Router is rebuilt from the registry whenever the registry changes; LiteLLM supplies retries, cooldowns and
the provider-specific wire formats. Imported lazily: ``import litellm`` costs seconds.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from backend.errors import BadRequest, LisaError, UpstreamError, UpstreamTimeout
from backend.registry.schemas import Hosting, ModelRoute
from backend.serve.asgi import JSON_HEADERS, SSE_HEADERS, Send, send_bytes
from backend.serve.passthrough import Outcome

_CALLS = {
    "chat/completions": "acompletion",
    "completions": "atext_completion",
    "embeddings": "aembedding",
    "images/generations": "aimage_generation",
}


def _dump(obj: Any) -> bytes:
    if hasattr(obj, "model_dump"):
        return orjson.dumps(obj.model_dump(exclude_none=True))
    return orjson.dumps(obj)


def _usage(obj: Any) -> tuple[int, int]:
    usage = getattr(obj, "usage", None)
    if usage is None and isinstance(obj, dict):
        usage = obj.get("usage")
    if usage is None:
        return 0, 0
    get = usage.get if isinstance(usage, dict) else lambda k, d=0: getattr(usage, k, d)
    return int(get("prompt_tokens", 0) or 0), int(get("completion_tokens", 0) or 0)


class LiteLLMBackend:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._router: Any = None
        self._version = -1

    def _router_for(self, routes: dict[str, ModelRoute], version: int) -> Any:
        if self._router is None or version != self._version:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            from litellm import Router

            model_list = []
            for r in routes.values():
                if r.hosting != Hosting.third_party or not r.provider_model:
                    continue
                params: dict[str, Any] = {"model": r.provider_model, "timeout": self._timeout}
                if r.base_url:
                    params["api_base"] = r.base_url
                if r.api_key:
                    params["api_key"] = r.api_key
                model_list.append({"model_name": r.id, "litellm_params": params})
            self._router = Router(model_list=model_list, num_retries=0, timeout=self._timeout)
            self._version = version
        return self._router

    async def forward(
        self,
        route: ModelRoute,
        endpoint: str,
        payload: dict[str, Any],
        stream: bool,
        routes: dict[str, ModelRoute],
        version: int,
        send: Send,
    ) -> Outcome:
        router = self._router_for(routes, version)
        call = getattr(router, _CALLS[endpoint])
        kwargs = {k: v for k, v in payload.items() if k not in ("model", "stream")}
        try:
            if stream:
                response = await call(model=route.id, stream=True, **kwargs)
            else:
                response = await call(model=route.id, **kwargs)
        except Exception as exc:
            raise _translate(route, exc) from exc
        if not stream:
            await send_bytes(send, 200, _dump(response), JSON_HEADERS)
            return Outcome(200, *_usage(response))
        outcome = Outcome(200, estimated=True)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        try:
            async for chunk in response:
                p, c = _usage(chunk)
                if p or c:
                    outcome.prompt_tokens, outcome.completion_tokens, outcome.estimated = p, c, False
                elif outcome.estimated:
                    outcome.completion_tokens += 1
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + _dump(chunk) + b"\n\n",
                        "more_body": True,
                    }
                )
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        except Exception as exc:
            err = _translate(route, exc)
            outcome.status = err.status_code
            body = orjson.dumps({"error": {"message": err.message, "type": err.openai_type, "code": err.status_code}})
            await send({"type": "http.response.body", "body": b"data: " + body + b"\n\n", "more_body": False})
        return outcome


def _translate(route: ModelRoute, exc: Exception) -> LisaError:
    name = exc.__class__.__name__
    status = getattr(exc, "status_code", None)
    message = f"model '{route.id}' ({route.provider_model}): {getattr(exc, 'message', None) or exc}"
    if "Timeout" in name or status == 408:
        return UpstreamTimeout(message)
    if status in (400, 422) and "APIConnection" not in name:
        return BadRequest(message)
    return UpstreamError(message)
