"""Makes a ``lisa serve`` started with this folder first on its PYTHONPATH raise where no code path expects it.

Tests of the gateway's catch-all need an exception that is no ``LisaError`` and that no upstream could provoke on
purpose (those paths are handled). Python imports ``sitecustomize`` at start-up; this one wraps the gateway's
``Gateway._infer`` once ``backend.serve.gateway`` is imported, keyed on the request body's ``user`` field:

  "raise-before-answer"  the first message sent to the client raises (nothing has reached the client yet);
  "raise-mid-stream"     the second body message of the answer raises (the stream has begun).

The exception's text, INJECTED, must reach the server log and never the client.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

INJECTED = "injected fault 7f3a: internal detail"
TARGET = "backend.serve.gateway"


def _patch(module: ModuleType) -> None:
    gateway = module.Gateway
    original = gateway._infer

    async def _infer(self: Any, scope: Any, receive: Any, send: Any, principal: Any, endpoint: str) -> None:
        seen: list[bytes] = []
        bodies = 0

        async def spy_receive() -> Any:
            message = await receive()
            seen.append(message.get("body", b""))
            return message

        async def faulty_send(message: Any) -> None:
            nonlocal bodies
            body = b"".join(seen)
            if b'"raise-before-answer"' in body:
                raise RuntimeError(INJECTED)
            if b'"raise-mid-stream"' in body and message["type"] == "http.response.body":
                bodies += 1
                if bodies == 2:
                    raise RuntimeError(INJECTED)
            await send(message)

        await original(self, scope, spy_receive, faulty_send, principal, endpoint)

    gateway._infer = _infer


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


if __name__ == "sitecustomize":  # loaded by Python at start-up; a test importing INJECTED patches nothing
    sys.meta_path.insert(0, _Finder())
