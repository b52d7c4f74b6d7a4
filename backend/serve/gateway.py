"""The OpenAI-compatible Serve gateway (``/v1/*``) as a raw ASGI application.

Hot path for an OpenAI-compatible upstream: read body -> authenticate (cached) -> parse JSON -> look up the
model (cached route table) -> pass the bytes through -> record usage (buffered). Providers that need a
different wire format go through LiteLLM (see litellm_backend).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from backend.auth.authenticator import Authenticator, credential_from_headers
from backend.auth.principal import Principal, can_access
from backend.db.outage import as_unavailable
from backend.errors import (
    BadRequest,
    LisaError,
    MethodNotAllowed,
    NotFound,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from backend.limits.limiter import Demand, Limiter, Ticket
from backend.limits.store import LimitStore
from backend.rag.chat import ChatRag, RagRequest, RagUsage
from backend.registry.route_table import RouteTable
from backend.registry.schemas import Hosting, ModelRoute, ModelType
from backend.serve.answer import AnswerPlan, Outcome, ask_upstream_for_usage, client_wants_usage
from backend.serve.asgi import (
    Receive,
    ResponseState,
    Scope,
    Send,
    header,
    read_body,
    send_bytes,
    send_error,
)
from backend.serve.budget import GENERATING, cap_to_grant, demand, estimate_prompt_tokens
from backend.serve.internal import PRINCIPAL_SCOPE_KEY
from backend.serve.litellm_backend import LiteLLMBackend
from backend.serve.passthrough import Passthrough
from backend.serve.request_fields import check_fields
from backend.serve.request_shape import check_shape
from backend.serve.upstream_errors import UpstreamProblem, present
from backend.usage.meter import UsageMeter, UsageRecord

# endpoint -> the model type it needs
ENDPOINTS: dict[str, ModelType] = {
    "chat/completions": ModelType.textgen,
    "completions": ModelType.textgen,
    "embeddings": ModelType.embedding,
    "images/generations": ModelType.imagegen,
}


# Every path the gateway answers (it sits outside FastAPI's routing; the authorization matrix reads this).
PATHS: list[tuple[str, str]] = [
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    *[("POST", f"/v1/{endpoint}") for endpoint in ENDPOINTS],
]


class Gateway:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        routes: RouteTable,
        passthrough: Passthrough,
        litellm: LiteLLMBackend,
        meter: UsageMeter,
        limits: LimitStore,
        limiter: Limiter,
        max_body: int,
        default_max_tokens: int = 1024,
        rag: ChatRag | None = None,
    ) -> None:
        self.auth = authenticator
        self.routes = routes
        self.passthrough = passthrough
        self.litellm = litellm
        self.meter = meter
        self.limits = limits
        self.limiter = limiter
        self.max_body = max_body
        self.default_max_tokens = default_max_tokens
        self.rag = rag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        response = ResponseState(send)
        try:
            principal = await self._principal(scope)
            if path.startswith("/v1/models") and method == "GET":
                await self._models(path, principal, response)
                return
            endpoint = path[4:]
            if endpoint not in ENDPOINTS:
                raise NotFound(f"unknown endpoint {method} {path}")
            if method != "POST":
                raise MethodNotAllowed(f"{path} accepts POST only")
            await self._infer(scope, receive, response, principal, endpoint)
        except Exception as exc:  # LisaError, a database outage (503 with the reason), or anything else (500)
            error = exc if isinstance(exc, LisaError) else as_unavailable(exc)
            if error is None:
                await response.fail(f"{method} {path}")
            elif not response.started:
                await send_error(response, error)
            else:  # raised after the answer began
                await response.end_with_error(error.status_code, error.message, error.openai_type)

    async def _principal(self, scope: Scope) -> Principal:
        internal: Principal | None = scope.get(PRINCIPAL_SCOPE_KEY)  # a call from inside (backend/serve/internal.py)
        if internal is not None:
            return internal
        credential = credential_from_headers(header(scope, b"authorization"), header(scope, b"api-key"))
        return await self.auth.authenticate(credential)

    async def _models(self, path: str, principal: Principal, send: Send) -> None:
        routes = await self.routes.snapshot()
        if path.rstrip("/") == "/v1/models":
            data = [_model_object(r) for r in routes.values() if r.serving and can_access(principal, r.allowed_groups)]
            await send_bytes(send, 200, orjson.dumps({"object": "list", "data": data}))
            return
        model_id = path[len("/v1/models/") :]
        route = routes.get(model_id)
        if route is None or not can_access(principal, route.allowed_groups):
            raise NotFound(f"The model '{model_id}' does not exist or you do not have access to it.")
        if (why := route.not_serving()) is not None:  # not listed either
            raise Unavailable(why)
        await send_bytes(send, 200, orjson.dumps(_model_object(route)))

    async def _infer(self, scope: Scope, receive: Receive, send: Send, principal: Principal, endpoint: str) -> None:
        started = time.perf_counter()
        body = await read_body(scope, receive, self.max_body)
        payload = _parse(body)
        check_fields(endpoint, payload)
        model_id = payload.get("model")
        if not isinstance(model_id, str) or not model_id:
            raise BadRequest("'model' is required and must be a string", param="model")
        check_shape(endpoint, payload)
        needed_type = ENDPOINTS[endpoint]
        routes = await self.routes.snapshot()
        route = routes.get(model_id)
        if route is None or not can_access(principal, route.allowed_groups):
            raise NotFound(f"The model '{model_id}' does not exist or you do not have access to it.")
        if route.type != needed_type:
            raise BadRequest(
                f"model '{model_id}' is a {route.type.value} model; /v1/{endpoint} needs {needed_type.value}",
                param="model",
            )
        if (why := route.unavailable()) is not None:  # not serving (its status), or marked unreachable
            raise Unavailable(why)
        stream = payload.get("stream") is True
        if stream and not route.streaming:
            raise BadRequest(f"model '{model_id}' does not support streaming", param="stream")
        rag = None
        if "rag" in payload:  # check_fields let it through on chat/completions only
            if self.rag is None:
                raise BadRequest("RAG is not available on this server", param="rag")
            rag = self.rag.parse(payload)
        ticket, wanted = await self._admit(principal, endpoint, payload, route, rag)
        outcome = Outcome(500)
        rag_usage: RagUsage | None = None
        forwarded = False
        try:
            changed = False
            sources = None
            if rag is not None and self.rag is not None:
                rag_usage = RagUsage()
                sources = await self._augment(principal, rag, payload, rag_usage)
                changed = True
            plan = AnswerPlan(endpoint, model_id, stream and client_wants_usage(payload), sources)
            if ticket is not None and wanted is not None and endpoint in GENERATING:
                changed = cap_to_grant(payload, route, wanted, ticket.completion) or changed
            if stream and endpoint in GENERATING:
                changed = ask_upstream_for_usage(payload) or changed  # real counts to meter
            outcome.prompt_estimate = estimate_prompt_tokens(payload)
            forwarded = True
            if route.hosting == Hosting.internal:
                if _adapt_for_upstream(payload, route) or changed:
                    body = orjson.dumps(payload)
                await self.passthrough.forward(route, body, stream, receive, send, outcome, plan)
            else:
                await self.litellm.forward(
                    route, payload, stream, routes, self.routes.version, receive, send, outcome, plan,
                    principal.is_admin,
                )  # fmt: skip
        except UpstreamProblem as exc:
            outcome.status = exc.status_code
            present(exc, route.id, principal.is_admin)
            raise
        except LisaError as exc:
            outcome.status = exc.status_code
            raise
        finally:
            granted = ticket.completion * wanted.choices if ticket and ticket.completion and wanted else 0
            if outcome.status < 400 and outcome.estimated and not stream and granted:
                outcome.completion_tokens = granted  # an answer without usage: what it may have cost, never 0
            spent = outcome.prompt_tokens + outcome.completion_tokens
            if rag_usage is not None:
                spent += self._meter_rag(principal, rag_usage)
            if forwarded:
                self._meter(principal, route, endpoint, outcome, started)
            if ticket is not None:
                await self.limiter.settle(ticket, spent)

    async def _admit(
        self, principal: Principal, endpoint: str, payload: dict[str, Any], route: ModelRoute, rag: RagRequest | None
    ) -> tuple[Ticket | None, Demand | None]:
        """Admission before anything costs tokens (RAG's query embedding included): a caller over a limit
        triggers no upstream call at all. Callers without limits pay one cached lookup."""
        buckets = await self.limits.buckets_for(principal)
        if not buckets:
            return None, None
        extra = self.rag.reserve_tokens(rag) if rag is not None and self.rag is not None else 0
        wanted = demand(endpoint, payload, route, self.default_max_tokens, extra)
        return await self.limiter.admit(buckets, wanted), wanted

    async def _augment(
        self, principal: Principal, rag: RagRequest, payload: dict[str, Any], usage: RagUsage
    ) -> list[dict[str, Any]]:
        assert self.rag is not None
        try:
            return await self.rag.augment(principal, rag, payload, usage)
        except UpstreamProblem:
            raise
        except (UpstreamError, UpstreamTimeout) as exc:  # their text names internal hosts: the detail only
            raise UpstreamProblem(exc.status_code, exc.openai_type, "retrieval for 'rag' failed: the embedding "
                                  "model, vector store or reranker did not answer", detail=exc.message) from exc  # fmt: skip

    def _meter(self, principal: Principal, route: ModelRoute, endpoint: str, outcome: Outcome, started: float) -> None:
        self.meter.record(
            UsageRecord(
                created_at=datetime.now(UTC),
                username=principal.username,
                token_id=principal.token_id,
                model=route.id,
                endpoint=endpoint,
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                latency_ms=(time.perf_counter() - started) * 1000,
                status=outcome.status,
                estimated=outcome.estimated,
            )
        )

    def _meter_rag(self, principal: Principal, usage: RagUsage) -> int:
        """One usage record per embedding or rerank call RAG made for the caller; the tokens they cost."""
        now = datetime.now(UTC)
        for call in usage.calls:
            self.meter.record(
                UsageRecord(
                    created_at=now,
                    username=principal.username,
                    token_id=principal.token_id,
                    model=call.model,
                    endpoint=call.endpoint,
                    prompt_tokens=call.tokens,
                    completion_tokens=0,
                    latency_ms=call.latency_ms,
                    status=call.status,
                    estimated=True,
                )
            )
        return usage.tokens


def _adapt_for_upstream(payload: dict[str, Any], route: ModelRoute) -> bool:
    """Rewrite the few fields OpenAI-compatible servers disagree on; True when the body must be re-serialised.

    OpenAI renamed ``max_tokens`` to ``max_completion_tokens`` (the openai SDK and LangChain now send the new
    name), but llama.cpp and older TGI read only ``max_tokens`` and would generate until the context is full.
    """
    changed = False
    if route.upstream_model and route.upstream_model != payload["model"]:
        payload["model"] = route.upstream_model
        changed = True
    if "max_completion_tokens" in payload and "max_tokens" not in payload:
        payload["max_tokens"] = payload["max_completion_tokens"]
        changed = True
    return changed


def _parse(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    return payload


def _model_object(route: ModelRoute) -> dict[str, Any]:
    return {
        "id": route.id,
        "object": "model",
        "created": route.created,
        "owned_by": "lisa",
        "type": route.type.value,
    }
