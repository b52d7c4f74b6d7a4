"""The egress guard: one policy for every address the server connects to because someone configured it.

What passes here: model ``base_url`` (internal and third_party; for a model LISA deploys, the endpoint its deployment
reports, before it is registered: backend/lifecycle/steps.py), OpenSearch endpoints and external PostgreSQL URLs of
repositories, the reranker, S3 buckets of ingestion sources and pipelines (and their SQS queue URLs), and MCP
servers (``check_url(url, "MCP server ...")`` when one is registered; connections through ``httpx2_transport()``,
as the ``mcp`` SDK's HTTP client is httpx2).

The policy: public addresses are allowed. Loopback, private (RFC 1918, fc00::/7), shared (100.64.0.0/10),
link-local (169.254.0.0/16, fe80::/10), unspecified, multicast and reserved addresses are refused unless a network
in ``LISA_EGRESS_ALLOW`` covers them, and the cloud metadata endpoints (169.254.169.254, 169.254.170.2,
fd00:ec2::254, ...) only by an entry naming exactly that address. IPv4 carried in IPv6 (``::ffff:a.b.c.d``,
NAT64 ``64:ff9b::/96``) is judged as that IPv4 address; the legacy numeric IPv4 forms (``2852039166``,
``0xA9FEA9FE``, ``0251.0376.0251.0376``, ``169.254.43518``) are read as the C library reads them. A host name is
resolved and every address it resolves to must pass; a name that does not resolve is refused, as it cannot be
checked. S3 buckets must match ``LISA_EGRESS_S3_BUCKETS`` (names, ``*`` as a wildcard).

Two moments. When a URL is registered (``check_url``, ``check_database_url``, ``check_bucket``): a 400 naming the
host and why, raised before anything is written. When a connection is made: ``socket_factory`` checks the address
each socket is about to connect to, after DNS, so a name that resolves elsewhere later (DNS rebinding) or a policy
tightened since registration is refused as well; aiohttp sessions get it through ``connector()``, httpx clients
through ``httpx_transport()``, SQLAlchemy engines re-check their URL before each new connection (``guard_engine``).

Where the guard cannot reach the socket, what remains: LiteLLM's own HTTP clients (the ``base_url`` of a
third_party model) are checked at registration only, so a name that later resolves elsewhere is followed (LiteLLM
accepts an aiohttp ``shared_session``; a session built on ``connector()`` would close that for its aiohttp-based
providers). asyncpg resolves the name again after ``guard_engine``'s check: a window of one DNS lookup. boto3 talks
to AWS (or ``LISA_AWS_ENDPOINT_URL``, the operator's), so S3 is guarded by bucket, not by address.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from backend.errors import BadRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]

DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")  # LISA's own local model servers listen on loopback
SETTING = "LISA_EGRESS_ALLOW"
# Instance and task metadata endpoints (AWS IMDS and its IPv6 address, ECS task metadata, EKS pod identity, Alibaba).
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.170.23", "fd00:ec2::254", "fd00:ec2::23", "100.100.100.200")
)
_V4 = [
    ("0.0.0.0/32", "unspecified"),
    ("0.0.0.0/8", "reserved ('this network')"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # with 255.255.255.255, the broadcast address
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "reserved (documentation)"),
    ("198.51.100.0/24", "reserved (documentation)"),
    ("203.0.113.0/24", "reserved (documentation)"),
    ("192.88.99.0/24", "reserved (6to4 relay)"),
    ("198.18.0.0/15", "reserved (benchmarking)"),
]
_V6 = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("fc00::/7", "private"),
    ("fec0::/10", "private (site-local)"),
    ("ff00::/8", "multicast"),
    ("2001:db8::/32", "reserved (documentation)"),
    ("3fff::/20", "reserved (documentation)"),
    ("2002::/16", "reserved (6to4)"),
    ("2001::/23", "reserved"),  # Teredo and other IETF protocol assignments
]
_RANGES: list[tuple[IPNetwork, str]] = [(ipaddress.ip_network(n), why) for n, why in _V4 + _V6]
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMBER = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_BUCKET_PATTERN = re.compile(r"^[a-z0-9*][a-z0-9.*-]{0,62}$")


class EgressRefused(BadRequest):
    """A URL, host or bucket the policy refuses (400, before anything is written)."""


class EgressUnresolved(EgressRefused):
    """A host name that does not resolve (yet): it cannot be checked, so registration refuses it; where the address
    comes from a deployment (a new load balancer's name takes a while to resolve), the caller may accept it and leave
    the judgement to connect time (``socket_factory``)."""


class EgressBlocked(OSError):
    """A connection the policy refuses at connect time (clients report it as a failed connection)."""


# --- pure functions --------------------------------------------------------------------------------------------
def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a numeric host means to ``inet_aton`` and URL parsers (1 to 4 parts, each decimal, octal
    with a leading 0 or hex with 0x; the last part fills the remaining bytes); None when it is not one."""
    parts = host.lower().split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.match(p) for p in parts):
        return None
    numbers: list[int] = []
    for part in parts:
        if part.startswith("0x"):
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                return None
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last + sum(n << (8 * (3 - i)) for i, n in enumerate(leading))
    return ipaddress.IPv4Address(value)


def parse_ip(host: str) -> IPAddress | None:
    """The address a URL host names, or None for a host name. Brackets, an IPv6 zone (``%eth0``) and
    percent-encoding are removed first."""
    text = unquote(host).strip().lower().removeprefix("[").removesuffix("]")
    if ":" in text:
        text = text.split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return legacy_ipv4(text)


def effective(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) IPv6 address reaches."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def category(ip: IPAddress) -> str | None:
    """Why an address is not public (``"loopback"``, ``"private"``, ...), or None for a public address."""
    ip = effective(ip)
    if ip in METADATA:
        return "link-local (cloud metadata)" if ip.is_link_local else "cloud metadata"
    for network, why in _RANGES:
        if ip in network:
            return why
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return "reserved"
    return None


def show(ip: IPAddress) -> str:
    inner = effective(ip)
    return str(ip) if inner == ip else f"{ip} ({inner})"


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs or single addresses; ValueError names a bad entry."""
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{SETTING}: {entry!r} is not a network (CIDR such as 10.0.0.0/16) or an address") from exc
    return tuple(networks)


def parse_bucket_patterns(entries: Iterable[str]) -> tuple[str, ...]:
    patterns = tuple(e.strip().lower() for e in entries)
    for pattern in patterns:
        if not _BUCKET_PATTERN.match(pattern):
            raise ValueError(f"LISA_EGRESS_S3_BUCKETS: {pattern!r} is not a bucket name or pattern (a-z 0-9 . - *)")
    return patterns


@dataclass(frozen=True)
class EgressPolicy:
    allowed: tuple[IPNetwork, ...] = ()
    s3_buckets: tuple[str, ...] = ()

    @classmethod
    def parse(cls, allow: Iterable[str] = DEFAULT_ALLOW, s3_buckets: Iterable[str] = ()) -> EgressPolicy:
        return cls(parse_networks(allow), parse_bucket_patterns(s3_buckets))

    def refusal(self, ip: IPAddress) -> str | None:
        """Why the policy refuses this address, or None when it may be connected to."""
        why = category(ip)
        if why is None:
            return None
        inner = effective(ip)
        if inner in METADATA:  # only an entry naming exactly this address; a wide network never does
            exact = any(n.num_addresses == 1 and inner in n for n in self.allowed)
            return None if exact else why
        return None if any(inner in n or ip in n for n in self.allowed) else why

    def bucket_allowed(self, bucket: str) -> bool:
        return any(fnmatch.fnmatchcase(bucket.lower(), p) for p in self.s3_buckets)


# --- the guard ---------------------------------------------------------------------------------------------------
class EgressGuard:
    """The policy plus the checks that need DNS, and the hooks that put it into HTTP and database clients."""

    def __init__(self, policy: EgressPolicy, resolve: Resolve | None = None, timeout: float = 5.0) -> None:
        self.policy = policy
        self._resolve = resolve or _getaddrinfo
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: Any) -> EgressGuard:
        return cls(EgressPolicy.parse(settings.egress_allow, settings.egress_s3_buckets))

    @classmethod
    def default(cls) -> EgressGuard:
        return cls(EgressPolicy.parse())

    # --- registration time ---------------------------------------------------------------------------------------
    async def check_url(self, url: str, what: str, schemes: Sequence[str] = ("http", "https")) -> None:
        """Refuses (400) a URL whose host is, or resolves to, an address the policy refuses."""
        from pydantic_core import Url

        try:
            parsed = Url(url)
        except ValueError as exc:
            raise EgressRefused(f"{what}: not a valid URL") from exc
        if parsed.scheme not in schemes:
            raise EgressRefused(f"{what}: the scheme must be {' or '.join(schemes)}, not {parsed.scheme!r}")
        if not parsed.host:
            raise EgressRefused(f"{what}: the URL names no host")
        await self.check_host(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80), what)

    async def check_host(self, host: str, port: int, what: str) -> None:
        await self.checked_addresses(host, port, what)

    async def checked_addresses(self, host: str, port: int, what: str) -> list[IPAddress]:
        """The addresses a host is or resolves to, once every one of them passed; else EgressRefused."""
        ip = parse_ip(host)
        if ip is not None:
            why = self.policy.refusal(ip)
            if why is not None:
                raise EgressRefused(f"{what}: {show(ip)} is {why}; not allowed{_hint(ip)}")
            return [ip]
        name = unquote(host).strip().lower().rstrip(".")
        try:
            addresses = await self.resolve(name, port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise EgressUnresolved(f"{what}: host name '{name}' does not resolve, so it cannot be checked") from exc
        for address in addresses:
            why = self.policy.refusal(address)
            if why is not None:
                raise EgressRefused(
                    f"{what}: {name} resolves to {show(address)}, which is {why}; not allowed{_hint(address)}"
                )
        return addresses

    async def check_database_url(self, url: str, what: str) -> None:
        """A PostgreSQL URL: every host it names (a Unix socket, or no host at all, counts as loopback)."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise EgressRefused(f"{what}: not a valid database URL") from exc
        for host, port in database_hosts(parsed.host, parsed.port, parsed.query.get("host")):
            if host is None:
                loopback = ipaddress.IPv4Address("127.0.0.1")
                if self.policy.refusal(loopback) is not None:
                    raise EgressRefused(f"{what}: a local socket is loopback; not allowed{_hint(loopback)}")
            else:
                await self.check_host(host, port, what)

    def check_bucket(self, bucket: str, what: str) -> None:
        if not self.policy.bucket_allowed(bucket):
            raise EgressRefused(
                f"{what}: S3 bucket '{bucket}' is not allowed (the buckets S3 sources may read are listed in "
                "LISA_EGRESS_S3_BUCKETS)"
            )

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        found = await asyncio.wait_for(self._resolve(host, port), self._timeout)
        addresses = [a for a in (parse_ip(f) for f in found) if a is not None]
        if not addresses:
            raise OSError(errno.ENOENT, f"{host} resolved to no address")
        return list(dict.fromkeys(addresses))

    # --- connect time --------------------------------------------------------------------------------------------
    def check_address(self, address: str) -> None:
        """Raises EgressBlocked (an OSError) for an address the policy refuses."""
        ip = parse_ip(address)
        if ip is None:
            raise EgressBlocked(errno.EACCES, f"{address} is not an address; the egress guard refused the connection")
        why = self.policy.refusal(ip)
        if why is not None:
            raise EgressBlocked(errno.EACCES, f"{show(ip)} is {why}; the egress guard refused the connection")

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """For aiohttp/aiohappyeyeballs: the socket for one connection attempt, after its address passed."""
        family, type_, proto, _canonname, sockaddr = addr_info
        self.check_address(str(sockaddr[0]))
        return socket.socket(family=family, type=type_, proto=proto)

    def connector(self, **kwargs: Any) -> Any:
        """An ``aiohttp.TCPConnector`` whose every connection passes the guard."""
        import aiohttp

        return aiohttp.TCPConnector(socket_factory=self.socket_factory, **kwargs)

    def httpx_transport(self, **kwargs: Any) -> Any:
        """An ``httpx.AsyncHTTPTransport`` that resolves each host itself, checks every address and connects to a
        checked one (no second lookup). Proxies are not supported: the guard would see only the proxy."""
        from backend.net.egress_httpx import guarded_transport

        return guarded_transport(self, **kwargs)

    def httpx2_transport(self, **kwargs: Any) -> Any:
        """The same for httpx2 (the HTTP client of the ``mcp`` SDK)."""
        from backend.net.egress_httpx import guarded_transport2

        return guarded_transport2(self, **kwargs)

    def guard_engine(self, engine: Any, url: str, what: str) -> None:
        """Re-checks ``url`` before each new connection of a SQLAlchemy async engine (asyncpg cannot be given a
        checked socket, so a name that resolves elsewhere between this check and asyncpg's own lookup still
        passes: a window of one DNS lookup)."""
        from sqlalchemy import event
        from sqlalchemy.util import await_only

        def _check(_dialect: Any, _record: Any, _cargs: Any, _cparams: Any) -> None:
            await_only(self.check_database_url(url, what))

        event.listen(engine.sync_engine, "do_connect", _check)


def database_hosts(host: str | None, port: int | None, query_host: Any) -> list[tuple[str | None, int]]:
    """(host, port) pairs a PostgreSQL URL connects to; None stands for a Unix socket (or libpq's local default)."""
    found: list[tuple[str | None, int]] = []
    candidates: list[str] = []
    if host:
        candidates += host.split(",")
    if query_host:
        candidates += [query_host] if isinstance(query_host, str) else list(query_host)
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate or candidate.startswith("/") or candidate.startswith("@"):
            found.append((None, port or 5432))
            continue
        name, at_port = candidate, port or 5432
        if candidate.startswith("["):
            name, _, rest = candidate[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                at_port = int(rest[1:])
        elif candidate.count(":") == 1:
            name, _, tail = candidate.partition(":")
            if tail.isdigit():
                at_port = int(tail)
        found.append((name, at_port))
    return found or [(None, port or 5432)]


def _hint(ip: IPAddress) -> str:
    if effective(ip) in METADATA:
        return f" (only an {SETTING} entry naming exactly this address allows it)"
    return f" (an admin may allow its network in {SETTING})"


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
