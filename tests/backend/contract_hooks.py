"""schemathesis hooks for test_api_contract.py, loaded by the `st run` it starts (SCHEMATHESIS_HOOKS).

- The run never revokes the tokens it authenticates with (a revoked credential would turn the rest of the run into
  401s): a DELETE aimed at one of them, or at the tokens of their owners, is redirected to a token or user that
  does not exist, which the API answers as it does for any other.
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
    if isinstance(case.body, dict | list):
        _remember(list(_strings_at_secret_fields(case.body)))


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    if case.operation.path == "/api/tokens" and case.method.upper() == "POST" and response.status_code == 201:
        _remember([orjson.loads(response.content)["token"]])
