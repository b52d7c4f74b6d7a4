"""``Text``: the string type of every text field LISA accepts from outside (bodies, forms, query and path).

PostgreSQL can store neither a NUL character (in ``text`` or ``jsonb``) nor an unpaired UTF-16 surrogate (which
JSON's ``\\ud800`` escapes can carry into a Python string, and which has no UTF-8 encoding): either would fail
deep in a write as a 500. They are refused at the edge instead, with a 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, SecretStr


def refuse_unstorable(value: str) -> str:
    """The value itself, or ValueError when it holds a NUL character or an unpaired surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("must not contain unpaired surrogates (it must be valid Unicode)") from exc
    return value


Text = Annotated[str, AfterValidator(refuse_unstorable)]


def _refuse_unstorable_secret(value: SecretStr) -> SecretStr:
    refuse_unstorable(value.get_secret_value())
    return value


SecretText = Annotated[SecretStr, AfterValidator(_refuse_unstorable_secret)]
