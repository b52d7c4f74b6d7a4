"""Errors on /api reach the client as ``{"detail": "<human message>"}`` with the right status (``ErrorResponse`` in
the OpenAPI document, backend/api/openapi.py, which ``install_error_handlers`` puts in place too)."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from backend.api.openapi import install_document
from backend.db.outage import DRIVER_ERRORS, as_unavailable
from backend.errors import LisaError


def _location(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    install_document(app)

    @app.exception_handler(LisaError)
    async def _lisa_error(_request: Request, exc: LisaError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)

    async def _driver_error(request: Request, exc: Exception) -> JSONResponse:
        """A database outage answers 503 with the reason; any other driver error stays a server error."""
        unavailable = as_unavailable(exc)
        if unavailable is None:
            raise exc
        return await _lisa_error(request, unavailable)

    for error_class in DRIVER_ERRORS:
        app.add_exception_handler(error_class, _driver_error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"detail": "the request body is not valid JSON"}, status_code=400)
        message = "; ".join(
            f"{_location(tuple(e.get('loc', ())))}: {str(e.get('msg', 'invalid')).removeprefix('Value error, ')}"
            for e in errors
        )
        return JSONResponse({"detail": message}, status_code=422)
