"""The OpenAPI document of /api, made to tell the truth about errors.

Every error on /api is ``{"detail": "..."}`` (backend/api/errors.py renders it, the request guard answers it):
``ErrorResponse`` is that shape, declared once and used for every error status of every route, 422 included (in
place of FastAPI's default list of validation errors, which LISA never sends).

Which statuses a route can answer is declared in two parts:
- what the request guard (backend/api/request_guard.py) and validation answer follows from the route itself, the
  same way the guard decides: a route needing a caller answers 401 and 403 (and 503 when the database is away);
  a route taking a JSON body answers 400 (malformed JSON or Content-Length), 413 and 415; a route with any
  parameter or body answers 422; a paged list answers 400 for a cursor it did not make. ``complete`` adds these
  to the document, so no route lists them by hand;
- what the route's service decides (404 not found, 409 conflict, 400 refused, 502 upstream) is declared on the
  route with ``responses=errors(...)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.routing import BaseRoute

from backend.api.deps import page_params
from backend.api.request_guard import depends_on, flat_routes, needs_of


class ErrorResponse(BaseModel):
    """Every error /api answers."""

    detail: str = Field(description="What went wrong, for people to read.")


REASONS = {
    400: "Bad request: the request is refused as it is (the detail says why).",
    401: "No credentials, or credentials that are invalid, expired or revoked.",
    403: "Known, but not allowed: a group this action needs, or a cross-site browser request.",
    404: "Not found, or not visible to this caller.",
    409: "Conflicts with the current state (an id already taken, a job already ended).",
    413: "The request body is over its size limit.",
    415: "The body is not sent as JSON (Content-Type: application/json).",
    422: "A parameter or a body field is invalid (the detail names it).",
    429: "Limited: retry after the time in the Retry-After header.",
    502: "An upstream service (a model, a vector store, object storage) failed.",
    503: "Unavailable for now (the database is away): retry later.",
    504: "An upstream service did not answer in time.",
}

SCHEMA_REF = "#/components/schemas/ErrorResponse"


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: these statuses, each with the one error body."""
    return {status: {"model": ErrorResponse, "description": REASONS[status]} for status in statuses}


def multipart_files_body(**fields: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra=`` for an upload route that reads its multipart form itself, as a stream: a required ``files``
    array, and these other form fields (name: JSON schema)."""
    files = {"type": "array", "items": {"type": "string", "format": "binary"}}
    schema = {"type": "object", "required": ["files"], "properties": {"files": files, **fields}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def implied_statuses(route: APIRoute) -> set[int]:
    """The statuses a route answers through the request guard and validation, whatever its service does."""
    needs = needs_of(route)
    statuses: set[int] = set()
    if needs.principal:
        statuses |= {401, 403, 503}
    if needs.json_body:
        statuses |= {400, 413, 415}
    if route.dependant.path_params or route.dependant.query_params or route.body_field is not None:
        statuses.add(422)
    if depends_on(route.dependant, page_params):
        statuses.add(400)
    return statuses


def _error_response(status: int) -> dict[str, Any]:
    return {"description": REASONS[status], "content": {"application/json": {"schema": {"$ref": SCHEMA_REF}}}}


def complete(document: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The document with every implied status declared and every error body the one ``ErrorResponse``."""
    paths = document.get("paths", {})
    for route in flat_routes(routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in implied_statuses(route):
                responses.setdefault(str(status), _error_response(status))
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {"application/json": {"schema": {"$ref": SCHEMA_REF}}}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)  # FastAPI's default 422 body: LISA sends ErrorResponse instead
    schemas.pop("ValidationError", None)
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema()
    return document


def install_document(app: FastAPI) -> None:
    """``app.openapi()`` (served at /openapi.json, behind authentication) returns the completed document."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(plain(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document
