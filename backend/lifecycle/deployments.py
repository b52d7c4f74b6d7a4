"""The deployers this process uses, opened on first use (backend/lifecycle/deployers/__init__.py's factory), and the
validation of a model's deployment spec against its deployer's own spec type."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, get_args

from pydantic import ValidationError

from backend.config import Settings
from backend.errors import BadRequest
from backend.lifecycle.deployers import Deployer, ModelSpec, open_deployer

Opener = Callable[[str, Settings], Deployer[Any]]


def spec_type(deployer: Deployer[Any]) -> type[ModelSpec]:
    """The spec class a deployer takes (``Deployer[EcsModelSpec]`` -> ``EcsModelSpec``)."""
    for klass in type(deployer).__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, ModelSpec):
                    return arg
    return ModelSpec


def describe(exc: ValidationError, prefix: str) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in (prefix, *error["loc"]))
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts[:10])


class Deployers:
    """``opened``: deployers the process already runs (the local deployer, which supervises its servers and is
    opened and closed with the service graph): used as they are, never closed here. Others are opened on first use
    through ``opener`` and closed by :meth:`aclose`."""

    def __init__(
        self, settings: Settings, opener: Opener = open_deployer, opened: Mapping[str, Deployer[Any]] | None = None
    ) -> None:
        self._settings = settings
        self._opener = opener
        self._given = dict(opened or {})
        self._open: dict[str, Deployer[Any]] = {}

    def get(self, kind: str) -> Deployer[Any]:
        """The deployer of ``kind``; 400 when this server cannot run it (not configured, not built)."""
        if kind in self._given:
            return self._given[kind]
        if kind not in self._open:
            try:
                self._open[kind] = self._opener(kind, self._settings)
            except (ValueError, NotImplementedError, ImportError) as exc:
                raise BadRequest(f"the '{kind}' deployer is not available on this server: {exc}") from exc
        return self._open[kind]

    def spec(self, kind: str, model_id: str, fields: dict[str, Any]) -> ModelSpec:
        """``fields`` as the deployer's spec for ``model_id``; 400 naming each field refused."""
        given = fields.get("model_id", model_id)
        if given != model_id:
            raise BadRequest(f"deployment.spec.model_id: the spec is the model's own ('{model_id}'), not '{given}'")
        try:
            return spec_type(self.get(kind)).model_validate({**fields, "model_id": model_id})
        except ValidationError as exc:
            raise BadRequest(describe(exc, "deployment.spec")) from exc

    async def aclose(self) -> None:
        for deployer in self._open.values():
            with contextlib.suppress(Exception):
                await deployer.aclose()
        self._open.clear()
