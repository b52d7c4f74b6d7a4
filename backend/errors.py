"""Typed errors raised by services; the API layer turns them into JSON (``{"detail"}`` on /api, OpenAI shape on /v1)."""

from __future__ import annotations


class LisaError(Exception):
    status_code = 500
    openai_type = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(LisaError):
    status_code = 400
    openai_type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param  # the offending request field, in OpenAI's notation (``messages[0].role``)


class Unauthorized(LisaError):
    status_code = 401
    openai_type = "authentication_error"


class Forbidden(LisaError):
    status_code = 403
    openai_type = "permission_error"


class NotFound(LisaError):
    status_code = 404
    openai_type = "not_found_error"


class MethodNotAllowed(LisaError):
    status_code = 405
    openai_type = "invalid_request_error"


class Conflict(LisaError):
    status_code = 409
    openai_type = "conflict_error"


class PayloadTooLarge(LisaError):
    status_code = 413
    openai_type = "invalid_request_error"


class RateLimited(LisaError):
    status_code = 429
    openai_type = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1.0, retry_after)


class Unavailable(LisaError):
    status_code = 503
    openai_type = "service_unavailable"


class UpstreamError(LisaError):
    status_code = 502
    openai_type = "upstream_error"


class UpstreamTimeout(LisaError):
    status_code = 504
    openai_type = "upstream_timeout"


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached right now (down, restarting, failing over). LISA reconnects by itself."""

    retry_after = 2.0

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}: the service is temporarily unavailable and recovers by itself; retry shortly")
        self.reason = reason
