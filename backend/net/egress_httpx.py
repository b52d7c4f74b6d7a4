"""The egress guard for httpx clients: a network backend that resolves, checks, then connects to a checked address.

``guarded_transport`` is for httpx; ``guarded_transport2`` for httpx2 (its fork, which the ``mcp`` SDK uses): the
same backend, raising the connect error of the HTTP core it sits in."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from backend.net.egress import EgressRefused

if TYPE_CHECKING:
    from backend.net.egress import EgressGuard


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Wraps httpcore's backend: the host is resolved here, every address must pass the policy, and the connection
    goes to an address that passed (TLS still verifies the host name: httpcore passes it as server_hostname)."""

    def __init__(self, guard: EgressGuard, inner: Any, connect_error: type[Exception] = httpcore.ConnectError) -> None:
        self._guard = guard
        self._inner = inner
        self._connect_error = connect_error

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = [str(a) for a in await self._guard.checked_addresses(host, port, f"connection to {host}")]
        except EgressRefused as exc:
            raise self._connect_error(exc.message) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                stream: httpcore.AsyncNetworkStream = await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
                return stream
            except self._connect_error as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise self._connect_error("the egress guard refuses Unix socket connections")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(guard: EgressGuard, **kwargs: Any) -> httpx.AsyncHTTPTransport:
    if kwargs.get("proxy") or kwargs.get("uds"):
        raise ValueError("a guarded transport connects directly: no proxy, no Unix socket")
    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = transport._pool
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool) or backend is None:  # fail closed if httpx changes
        raise RuntimeError("httpx's transport changed shape: cannot put the egress guard into it")
    pool._network_backend = GuardedNetworkBackend(guard, backend)
    return transport


def guarded_transport2(guard: EgressGuard, **kwargs: Any) -> Any:
    """An ``httpx2.AsyncHTTPTransport`` (the ``mcp`` SDK's HTTP client) whose every connection passes the guard."""
    import httpcore2
    import httpx2

    if kwargs.get("proxy") or kwargs.get("uds"):
        raise ValueError("a guarded transport connects directly: no proxy, no Unix socket")
    transport = httpx2.AsyncHTTPTransport(**kwargs)
    pool = transport._pool
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(pool, httpcore2.AsyncConnectionPool) or backend is None:  # fail closed if httpx2 changes
        raise RuntimeError("httpx2's transport changed shape: cannot put the egress guard into it")
    pool._network_backend = GuardedNetworkBackend(guard, backend, httpcore2.ConnectError)  # type: ignore[assignment]
    return transport
