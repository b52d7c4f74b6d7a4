"""schemathesis hooks for test_api_contract.py, loaded by the `st run` it starts (SCHEMATHESIS_HOOKS).

- The run never revokes the tokens it authenticates with (a revoked credential would turn the rest of the run into
  401s), nor deletes the repository and collection it was given to work in (every route below them would answer
  404 from then on): such a DELETE is redirected to a token, user, repository or collection that does not exist,
  which the API answers as it does for any other.
- The MCP servers it registers are the contract run's own MCP server (LISA_CONTRACT_MCP_URL, a real one over
  streamable HTTP): a URL it generated is replaced by that one, and a stdio registration becomes a registration of
  that one, so that the run never executes a command it made up, and its MCP servers answer (an unreachable one is
  rightly a 502, which the run counts as a failure). That server has only quick tools, and a time limit the run
  made up for a tool call is dropped (a far too short one is rightly a 504, which would count as a failure too).
- Every secret the run sends (the JSON fields the secret watch treats as secrets) or is issued (a created token) is
  written, one per line, to LISA_CONTRACT_SECRETS, so that the session's secret watch checks the servers' logs for
  them too (tests/secret_watch.py only sees httpx traffic; schemathesis sends with requests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import schemathesis

from tests.secret_watch import MIN_LENGTH, _strings_at_secret_fields

PROTECTED_TOKENS = set(filter(None, os.environ.get("LISA_CONTRACT_PROTECTED_TOKENS", "").split(",")))
PROTECTED_USERS = set(filter(None, os.environ.get("LISA_CONTRACT_PROTECTED_USERS", "").split(",")))
PROTECTED_REPOSITORY = os.environ.get("LISA_CONTRACT_PROTECTED_REPOSITORY", "")
MCP_URL = os.environ.get("LISA_CONTRACT_MCP_URL", "http://127.0.0.1:9/mcp")
SECRETS = Path(os.environ["LISA_CONTRACT_SECRETS"]) if os.environ.get("LISA_CONTRACT_SECRETS") else None


def _remember(values: list[str]) -> None:
    values = [v for v in values if len(v) >= MIN_LENGTH and "\n" not in v]
    if SECRETS is not None and values:
        with SECRETS.open("a", encoding="utf-8", errors="surrogatepass") as out:
            out.writelines(v + "\n" for v in values)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() == "DELETE" and case.operation.path.startswith("/api/tokens"):
        if (case.path_parameters or {}).get("token_id") in PROTECTED_TOKENS:
            case.path_parameters["token_id"] = "tok_not_a_token"
        if (case.query or {}).get("username") in PROTECTED_USERS:
            case.query["username"] = "not-a-user"
    deletes_the_workspace = case.method.upper() == "DELETE" and case.operation.path in (
        "/api/repositories/{repository_id}",
        "/api/repositories/{repository_id}/collections/{collection_id}",
    )
    if deletes_the_workspace and (case.path_parameters or {}).get("repository_id") == PROTECTED_REPOSITORY:
        case.path_parameters["repository_id"] = "not-a-repository"
    if case.operation.path.startswith("/api/mcp/servers") and isinstance(case.body, dict):
        for secrets in (case.body.get("headers"), case.body.get("env")):  # values of any name are secrets there
            if isinstance(secrets, dict):
                _remember([v for v in secrets.values() if isinstance(v, str)])
        if case.body.get("transport") == "stdio":
            case.body["transport"] = "streamable_http"
            case.body["url"] = MCP_URL
        for stdio_field in ("command", "args", "env"):
            case.body.pop(stdio_field, None)
        if isinstance(case.body.get("url"), str):
            case.body["url"] = MCP_URL
        if case.operation.path.endswith("/call"):
            case.body.pop("timeout_seconds", None)
    if isinstance(case.body, dict | list):
        _remember(list(_strings_at_secret_fields(case.body)))


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    if case.operation.path == "/api/tokens" and case.method.upper() == "POST" and response.status_code == 201:
        _remember([orjson.loads(response.content)["token"]])
