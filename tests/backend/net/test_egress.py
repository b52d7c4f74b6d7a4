"""The egress guard's pure functions, and its connect-time hooks in aiohttp, httpx, SQLAlchemy/asyncpg, opensearch-py
and the reranker, each against a real listening socket that must see no connection when the guard refuses."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from backend.errors import UpstreamError
from backend.net.egress import (
    EgressBlocked,
    EgressGuard,
    EgressPolicy,
    EgressRefused,
    category,
    database_hosts,
    legacy_ipv4,
    parse_bucket_patterns,
    parse_ip,
    parse_networks,
)
from tests.backend.net.listener import Listener

NO_LOOPBACK = EgressGuard(EgressPolicy.parse(allow=[]))
DEFAULT = EgressGuard.default()


# --- pure functions ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2852039166", "169.254.169.254"),
        ("0xA9FEA9FE", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("10.0.0.1.", "10.0.0.1"),
        ("%31%32%37.0.0.1", "127.0.0.1"),
        ("[::ffff:a9fe:a9fe]", "::ffff:a9fe:a9fe"),
        ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe"),
        ("fe80::1%eth0", "fe80::1"),
        ("[FD00:EC2::254]", "fd00:ec2::254"),
    ],
)
def test_hosts_that_are_addresses_in_any_spelling(host: str, address: str) -> None:
    assert parse_ip(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "1e100", "0x.example", "09.1", "256.1.1.1", "1.2.3.4.5", "1.256.1.1"])
def test_names_and_invalid_numbers_are_not_addresses(host: str) -> None:
    assert parse_ip(host) is None
    assert legacy_ipv4(host) is None


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("169.254.170.2", "link-local (cloud metadata)"),
        ("fd00:ec2::254", "cloud metadata"),
        ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
        ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
        ("100.100.100.200", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("100.64.0.1", "shared address space (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "reserved ('this network')"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved (documentation)"),
        ("2001:db8::1", "reserved (documentation)"),
        ("2002:a9fe:a9fe::1", "reserved (6to4)"),
        ("4000::1", "reserved"),
    ],
)
def test_non_public_addresses_and_why(address: str, why: str) -> None:
    assert category(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert category(ipaddress.ip_address(address)) is None
    assert NO_LOOPBACK.policy.refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_open_their_ranges_but_only_exact_entries_open_metadata() -> None:
    ip = ipaddress.ip_address
    default = DEFAULT.policy
    assert default.refusal(ip("127.0.0.1")) is None and default.refusal(ip("::1")) is None
    assert default.refusal(ip("::ffff:127.0.0.1")) is None  # judged as the IPv4 address it carries
    assert default.refusal(ip("10.0.0.1")) == "private"
    vpc = EgressPolicy.parse(["10.40.0.0/16", "169.254.0.0/16", "0.0.0.0/0"])
    assert vpc.refusal(ip("10.40.3.4")) is None and vpc.refusal(ip("169.254.1.1")) is None
    assert vpc.refusal(ip("169.254.169.254")) == "link-local (cloud metadata)"  # no wide network opens metadata
    assert vpc.refusal(ip("127.0.0.1")) is None  # 0.0.0.0/0 opens every other IPv4 range
    assert vpc.refusal(ip("::1")) == "loopback"
    exact = EgressPolicy.parse(["169.254.169.254"])
    assert exact.refusal(ip("169.254.169.254")) is None and exact.refusal(ip("169.254.170.2")) is not None


def test_configuration_entries_are_validated() -> None:
    assert [str(n) for n in parse_networks(["10.0.0.0/8", " ::1 ", "10.1.2.3/16"])] == [
        "10.0.0.0/8",
        "::1/128",
        "10.1.0.0/16",
    ]
    with pytest.raises(ValueError, match=re.escape("'models.internal' is not a network")):
        parse_networks(["models.internal"])
    assert parse_bucket_patterns(["Docs-*", "lisa-docs"]) == ("docs-*", "lisa-docs")
    with pytest.raises(ValueError, match="not a bucket name"):
        parse_bucket_patterns(["s3://x"])
    buckets = EgressPolicy.parse(s3_buckets=["lisa-*", "exact"])
    assert buckets.bucket_allowed("lisa-docs") and buckets.bucket_allowed("exact")
    assert not buckets.bucket_allowed("other") and not EgressPolicy.parse().bucket_allowed("lisa-docs")


@pytest.mark.parametrize(
    ("url_parts", "hosts"),
    [
        (("db.example", 6432, None), [("db.example", 6432)]),
        ((None, None, None), [(None, 5432)]),
        ((None, None, "/var/run/postgresql"), [(None, 5432)]),
        ((None, None, ("a:5433", "b")), [("a", 5433), ("b", 5432)]),
        (("h1:5432,h2:5433", None, None), [("h1", 5432), ("h2", 5433)]),
        ((None, None, "[fd00:ec2::254]:5432"), [("fd00:ec2::254", 5432)]),
    ],
)
def test_database_hosts(url_parts: tuple[Any, Any, Any], hosts: list[tuple[str | None, int]]) -> None:
    assert database_hosts(*url_parts) == hosts


# --- registration-time checks ------------------------------------------------------------------------------------
def resolver(table: dict[str, list[str]]) -> Any:
    async def resolve(host: str, _port: int) -> Sequence[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


async def test_urls_are_refused_with_the_host_and_the_reason() -> None:
    guard = EgressGuard(EgressPolicy.parse(), resolve=resolver({"mixed.test": ["8.8.8.8", "10.1.1.1"]}))
    cases = {
        "http://169.254.169.254/latest": "169.254.169.254 is link-local (cloud metadata); not allowed",
        "http://2852039166/": "169.254.169.254 is link-local (cloud metadata)",
        "http://[::ffff:169.254.169.254]:80/": "::ffff:a9fe:a9fe (169.254.169.254) is link-local (cloud metadata)",
        "https://10.0.0.1:8443/v1": "10.0.0.1 is private; not allowed",
        "http://mixed.test/": "mixed.test resolves to 10.1.1.1, which is private",
        "http://nowhere.test/": "host name 'nowhere.test' does not resolve",
        "ftp://8.8.8.8/": "the scheme must be http or https",
        "not a url": "not a valid URL",
    }
    for url, fragment in cases.items():
        with pytest.raises(EgressRefused) as refused:
            await guard.check_url(url, "model 'm': base_url")
        assert refused.value.status_code == 400
        assert refused.value.message.startswith("model 'm': base_url: ") and fragment in refused.value.message, url
    await guard.check_url("http://127.0.0.1:8000/v1", "x")  # loopback: allowed by default
    await guard.check_url("https://8.8.8.8/", "x")


async def test_database_urls_are_checked_without_showing_the_password() -> None:
    with pytest.raises(EgressRefused) as refused:
        await DEFAULT.check_database_url("postgresql://lisa:s3cr3t@10.0.0.1:5432/db", "pgvector database_url")
    assert "10.0.0.1 is private" in refused.value.message and "s3cr3t" not in refused.value.message
    with pytest.raises(EgressRefused, match="a local socket is loopback"):
        await NO_LOOPBACK.check_database_url("postgresql://lisa@/db?host=/tmp", "pgvector database_url")
    with pytest.raises(EgressRefused, match="not a valid database URL"):
        await DEFAULT.check_database_url("::nonsense::", "pgvector database_url")
    await DEFAULT.check_database_url("postgresql://lisa@/db?host=/tmp", "pgvector database_url")


def test_buckets_outside_the_allowlist_are_refused() -> None:
    with pytest.raises(EgressRefused, match="S3 bucket 'other' is not allowed"):
        EgressGuard(EgressPolicy.parse(s3_buckets=["lisa-*"])).check_bucket("other", "s3://other/x")


# --- connect time, against a real listener ---------------------------------------------------------------------
async def test_aiohttp_connections_pass_the_guard(listener: Listener) -> None:
    async with aiohttp.ClientSession(connector=NO_LOOPBACK.connector()) as session:
        for url in (f"http://127.0.0.1:{listener.port}/", f"http://localhost:{listener.port}/"):
            with pytest.raises(aiohttp.ClientConnectorError) as failed:
                await session.get(url)
            assert "127.0.0.1 is loopback; the egress guard refused the connection" in str(failed.value)
            assert isinstance(failed.value.os_error, EgressBlocked)
    assert listener.accepted == 0
    async with (
        aiohttp.ClientSession(connector=DEFAULT.connector()) as session,
        session.get(f"http://localhost:{listener.port}/") as resp,
    ):
        assert resp.status == 200
    assert listener.accepted == 1


class RebindingResolver(AbstractResolver):
    """Answers a public address to the first lookup and loopback to every later one (DNS rebinding)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        address = "8.8.8.8" if self.lookups == 1 else "127.0.0.1"
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


async def test_a_name_that_rebinds_after_the_check_is_refused_at_connect_time(listener: Listener) -> None:
    rebinding = RebindingResolver(listener.port)

    async def registration_lookup(host: str, port: int) -> list[str]:
        return [r["host"] for r in await rebinding.resolve(host, port)]

    guard = EgressGuard(EgressPolicy.parse(allow=[]), resolve=registration_lookup)
    await guard.check_url(f"http://rebind.test:{listener.port}/v1", "model 'r': base_url")  # 8.8.8.8: passes
    async with aiohttp.ClientSession(connector=guard.connector(resolver=rebinding, use_dns_cache=False)) as session:
        with pytest.raises(aiohttp.ClientConnectorError, match=re.escape("127.0.0.1 is loopback")):
            await session.get(f"http://rebind.test:{listener.port}/v1/models")
    assert rebinding.lookups == 2 and listener.accepted == 0


async def test_httpx_connections_pass_the_guard(listener: Listener) -> None:
    async with httpx.AsyncClient(transport=NO_LOOPBACK.httpx_transport()) as client:
        for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]"):
            with pytest.raises(httpx.ConnectError, match="is loopback; not allowed"):
                await client.get(f"http://{host}:{listener.port}/")
    assert listener.accepted == 0
    async with httpx.AsyncClient(transport=DEFAULT.httpx_transport()) as client:
        assert (await client.get(f"http://localhost:{listener.port}/")).status_code == 200
    assert listener.accepted == 1


async def test_sqlalchemy_engines_recheck_their_url_before_connecting(listener: Listener) -> None:
    from sqlalchemy import text

    from backend.db.engine import create_engine

    url = f"postgresql://lisa:pw@127.0.0.1:{listener.port}/db"
    engine = create_engine(url, 1)
    NO_LOOPBACK.guard_engine(engine, url, "pgvector database_url")
    try:
        with pytest.raises(EgressRefused, match=re.escape("pgvector database_url: 127.0.0.1 is loopback")):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert listener.accepted == 0


async def test_opensearch_connections_pass_the_guard(listener: Listener) -> None:
    from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

    from backend.rag.vectorstores import StoreConfig
    from backend.rag.vectorstores.opensearch import OpenSearchStore

    config = StoreConfig("opensearch", {"endpoint": f"http://127.0.0.1:{listener.port}"})
    store = OpenSearchStore.from_config(config, NO_LOOPBACK)
    try:
        with pytest.raises(OpenSearchConnectionError, match=re.escape("127.0.0.1 is loopback")):
            await store.client.info()
    finally:
        await store.close()
    assert listener.accepted == 0


async def test_the_reranker_connects_through_the_guard(listener: Listener) -> None:
    from backend.rag.search import Reranker

    with pytest.raises(UpstreamError, match=re.escape("127.0.0.1 is loopback")):
        await Reranker(f"http://localhost:{listener.port}", NO_LOOPBACK).scores("q", ["a"])
    assert listener.accepted == 0
