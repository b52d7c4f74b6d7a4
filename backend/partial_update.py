"""``PartialUpdate``: the base of PATCH bodies. A field left out keeps its value; a field sent with ``null`` is
refused (422 naming it) unless the class lists it in ``NULLABLE`` (where null means "remove it"); an empty body is
refused too (nothing to change).

Fields are declared ``X | None = None`` (pydantic's plain nullable form, so validation errors name the field and
nothing else), and the JSON schema leaves ``null`` out of every field not in ``NULLABLE``, so the OpenAPI document
says what the API accepts.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator


def _without_null(schema: dict[str, Any], model: type[BaseModel]) -> None:
    nullable: frozenset[str] = getattr(model, "NULLABLE", frozenset())
    for name, prop in schema.get("properties", {}).items():
        choices = prop.get("anyOf")
        if name in nullable or not isinstance(choices, list):
            continue
        rest = [choice for choice in choices if choice != {"type": "null"}]
        if len(rest) == 1:
            del prop["anyOf"]
            prop.update(rest[0])
        else:
            prop["anyOf"] = rest
        if prop.get("default", ...) is None:
            del prop["default"]


class PartialUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_without_null)

    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _refuse_nulls_and_nothing(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(k for k, v in data.items() if v is None and k in cls.model_fields and k not in cls.NULLABLE)
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: cannot be null (leave a field out to keep its value)")
            if not data:
                raise ValueError(f"nothing to change: send at least one of {', '.join(cls.model_fields)}")
        return data
