"""Providers that need translation (Bedrock, Anthropic, Vertex, ...) go through LiteLLM's Router.

The Router is rebuilt from the registry whenever the registry changes; LiteLLM supplies retries, cooldowns and
the provider-specific wire formats. Imported lazily: ``import litellm`` costs seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import orjson

from backend.registry.schemas import Hosting, ModelRoute
from backend.serve.answer import AnswerPlan, Outcome, StreamFilter, error_event, with_sources
from backend.serve.asgi import (
    JSON_HEADERS,
    SSE_HEADERS,
    Receive,
    Send,
    new_request_id,
    send_body_quietly,
    send_bytes,
    wait_disconnect,
)
from backend.serve.request_fields import provider_kwargs
from backend.serve.upstream_errors import UpstreamProblem, present, retry_after_seconds
from backend.serve.upstream_usage import counts

log = logging.getLogger("lisa.serve")

_CALLS = {
    "chat/completions": "acompletion",
    "completions": "atext_completion",
    "embeddings": "aembedding",
    "images/generations": "aimage_generation",
}


def _plain(obj: Any) -> dict[str, Any]:
    """A LiteLLM response object as the JSON object OpenAI would send (``None`` fields left out)."""
    data = obj.model_dump(exclude_none=True) if hasattr(obj, "model_dump") else obj
    return data if isinstance(data, dict) else {}


def _dump(obj: Any) -> bytes:
    return orjson.dumps(_plain(obj))


class LiteLLMBackend:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._router: Any = None
        self._version = -1

    def _router_for(self, routes: dict[str, ModelRoute], version: int) -> Any:
        if self._router is None or version != self._version:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm
            from litellm import Router

            # Image and file URLs in messages that LiteLLM fetches itself (for providers that take bytes, such as
            # Bedrock) pass LiteLLM's own SSRF check, with no host exempt: stated here, not left to its defaults.
            litellm.user_url_validation = True
            litellm.user_url_allowed_hosts = []

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
            # One deployment per model: a cooldown has nothing to fall back to, and would turn the next requests'
            # errors into "no deployments available" (429).
            self._router = Router(model_list=model_list, num_retries=0, timeout=self._timeout, disable_cooldowns=True)
            self._version = version
        return self._router

    async def forward(
        self,
        route: ModelRoute,
        payload: dict[str, Any],
        stream: bool,
        routes: dict[str, ModelRoute],
        version: int,
        receive: Receive,
        send: Send,
        outcome: Outcome,
        plan: AnswerPlan,
        reveal: bool,
    ) -> None:
        """Call the provider with the allowlisted fields only; ``outcome`` is kept up to date while streaming."""
        router = self._router_for(routes, version)
        call = getattr(router, _CALLS[plan.endpoint])
        kwargs = provider_kwargs(plan.endpoint, payload)
        try:
            if stream:
                response = await call(model=route.id, stream=True, **kwargs)
            else:
                response = await call(model=route.id, **kwargs)
        except Exception as exc:
            raise translate(route, exc) from exc
        if not stream:
            await send_bytes(send, 200, with_sources(_dump(response), plan.sources), JSON_HEADERS)
            outcome.status = 200
            usage = counts(_plain(response).get("usage"))
            if usage is not None:
                outcome.prompt_tokens, outcome.completion_tokens = usage
            else:
                outcome.prompt_tokens, outcome.estimated = outcome.prompt_estimate, True
            return
        await self._stream(route, response, receive, send, outcome, plan, reveal)

    async def _stream(
        self,
        route: ModelRoute,
        response: Any,
        receive: Receive,
        send: Send,
        outcome: Outcome,
        plan: AnswerPlan,
        reveal: bool,
    ) -> None:
        outcome.prompt_tokens, outcome.estimated = outcome.prompt_estimate, True
        events = StreamFilter(outcome, plan)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        except BaseException:
            with contextlib.suppress(Exception):
                await response.aclose()
            raise  # nothing reached the client: the gateway answers
        outcome.status = 200
        watcher = asyncio.create_task(wait_disconnect(receive))
        chunks = aiter(response)
        try:
            while True:
                # Race the next chunk against the client leaving: a client gone stops the provider call at once.
                step = asyncio.ensure_future(anext(chunks))
                await asyncio.wait((step, watcher), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(BaseException):
                        await step
                    outcome.status = 499
                    break
                try:
                    chunk = step.result()
                except StopAsyncIteration:
                    break
                except Exception as exc:  # the provider failed mid-stream
                    problem = present(translate(route, exc), route.id, reveal)
                    outcome.status = problem.status_code
                    await send_body_quietly(send, error_event(problem.status_code, problem.message,
                                                              problem.openai_type))  # fmt: skip
                    break
                out = events.chunk(_plain(chunk))
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            if outcome.status == 200:
                await send({"type": "http.response.body", "body": events.tail(), "more_body": True})
        except Exception:  # LISA's own failure, not the provider's
            outcome.status = 500
            request_id = new_request_id()
            log.exception("unexpected error %s while streaming model=%s", request_id, route.id)
            message = f"The server had an error while streaming the answer (request id {request_id})."
            await send_body_quietly(send, error_event(500, message, "server_error"))
        finally:
            watcher.cancel()
            if outcome.status != 200:
                with contextlib.suppress(Exception):
                    await response.aclose()
            await send_body_quietly(send, b"", more_body=False)


def translate(route: ModelRoute, exc: Exception) -> UpstreamProblem:
    """LiteLLM's exception as LISA's own words; LiteLLM's message (which may quote the provider's request) is
    only the detail. Its exception class names are a fixed vocabulary, safe to show."""
    name = exc.__class__.__name__
    status = getattr(exc, "status_code", None)
    detail = str(getattr(exc, "message", None) or exc)
    body = getattr(exc, "body", None)  # the provider's own answer, which LiteLLM's message may leave out
    if body and str(body) not in detail:
        detail = f"{str(body)[:2000]} | {detail}"
    what = f"model '{route.id}'"
    key = route.api_key
    if "Timeout" in name or status == 408:
        return UpstreamProblem(504, "upstream_timeout", f"{what}: the provider did not answer in time ({name})",
                               detail=detail, secret=key)  # fmt: skip
    if status in (401, 403) or "Authentication" in name or "PermissionDenied" in name:
        return UpstreamProblem(502, "upstream_error", f"{what}: the provider rejected the stored credentials "
                               f"({name})", detail=detail, secret=key)  # fmt: skip
    if status == 429 or "RateLimit" in name:
        return UpstreamProblem(429, "rate_limit_exceeded", f"{what}: the provider is rate limiting requests",
                               detail=detail, retry_after=retry_after_seconds(_retry_after(exc)), secret=key)  # fmt: skip
    if status in (400, 413, 422) and "APIConnection" not in name:
        return UpstreamProblem(status, "invalid_request_error", f"{what}: the provider rejected the request "
                               f"({name})", detail=detail, secret=key)  # fmt: skip
    if "APIConnection" in name or "Connection error" in detail:
        return UpstreamProblem(502, "upstream_error", f"{what}: the provider is unreachable ({name})",
                               detail=detail, secret=key)  # fmt: skip
    return UpstreamProblem(502, "upstream_error", f"{what}: the provider call failed ({name}, status {status})",
                           detail=detail, secret=key)  # fmt: skip


def _retry_after(exc: Exception) -> str | None:
    """The provider's ``Retry-After`` header, where LiteLLM kept the response."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    return str(value) if value is not None else None
