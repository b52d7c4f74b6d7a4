"""``{{variable}}`` placeholders in prompt templates: which a text holds, and filling them in.

A placeholder is a name (a letter or ``_``, then letters, digits or ``_``; at most 64 characters) between double
braces, with optional spaces inside: ``{{topic}}``, ``{{ topic }}``. Anything else in braces is plain text
(``{{ not a name }}``, ``{single}``, JSON examples). Filling is one pass over the template: a value that itself
contains ``{{...}}`` is inserted as it is, never expanded again.

Filling is strict both ways: every placeholder needs a value (400 naming every missing one), and a value for a name
the template does not have is refused too (400 naming them), since it is almost always a typo that would otherwise
leave a placeholder silently unfilled elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from backend.errors import BadRequest

NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
PLACEHOLDER = re.compile(r"\{\{\s*(" + NAME_PATTERN + r")\s*\}\}")


def variables_of(text: str) -> list[str]:
    """The placeholder names of ``text``, each once, in the order they first appear."""
    return list(dict.fromkeys(match.group(1) for match in PLACEHOLDER.finditer(text)))


def _quoted(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every placeholder replaced by its value; BadRequest naming every missing and unknown name."""
    wanted = variables_of(text)
    missing = [name for name in wanted if name not in values]
    unknown = sorted(set(values) - set(wanted))
    problems = []
    if missing:
        problems.append(f"missing values for variables {_quoted(missing)}")
    if unknown:
        problems.append(f"unknown variables {_quoted(unknown)} (the template has {_quoted(wanted) or 'none'})")
    if problems:
        raise BadRequest("; ".join(problems), param="variables")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)
