"""MCP servers through the running server, against real MCP server processes built with the ``mcp`` SDK
(tests/servers/mcp_tools.py): one over streamable HTTP (which insists on a header), one run by LISA over stdio.

Registrations and who sees them (global, group-restricted, personal, disabled), secrets never returned, the egress
guard, tool listing and calls over both transports, the per-tool allow list, bounded output, time limits, a hosted
process that crashes (started again) or whose server is deleted (stopped), a dead server reported in ``errors``.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.secret_watch import SecretWatch
from tests.support import ROOT, LisaServer, Proc, free_port, start_module

TOOLS_SCRIPT = str(ROOT / "tests" / "servers" / "mcp_tools.py")
HEADER = "X-Api-Key"


@pytest.fixture(scope="module")
def header_secret(secret_watch: SecretWatch) -> str:
    value = "mcp-header-" + secrets.token_urlsafe(24)
    secret_watch.learn(value, "the MCP test server's header")
    return value


@pytest.fixture(scope="module")
def env_secret(secret_watch: SecretWatch) -> str:
    value = "mcp-env-" + secrets.token_urlsafe(24)
    secret_watch.learn(value, "the stdio MCP server's environment")
    return value


@pytest.fixture(scope="module")
def http_server(session_tmp: Path, header_secret: str) -> Iterator[Proc]:
    proc = start_module(
        "tests.servers.mcp_tools", session_tmp, "--transport", "http", "--require-header", f"{HEADER}={header_secret}"
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def users(admin: httpx.Client, lisa: LisaServer) -> Iterator[dict[str, httpx.Client]]:
    """Two plain users, with personal servers turned on (the mcp_connections toggle is off by default)."""
    toggle = admin.patch("/api/configuration", json={"features": {"mcp_connections": True}})
    assert toggle.status_code == 200, toggle.text
    clients = {}
    for name, groups in (("alice", ["team-a"]), ("bob", ["team-b"])):
        resp = admin.post("/api/tokens", json={"name": f"mcp-{name}", "username": f"mcp-{name}", "groups": groups})
        assert resp.status_code == 201, resp.text
        clients[name] = lisa.client(resp.json()["token"])
    yield clients
    for client in clients.values():
        client.close()
    admin.patch("/api/configuration", json={"features": {"mcp_connections": None}})


@pytest.fixture(scope="module")
def cleanup(admin: httpx.Client) -> Iterator[list[str]]:
    """Ids of the servers this module registers, deleted at its end (the session's server is shared)."""
    created: list[str] = []
    yield created
    for server_id in created:
        admin.delete(f"/api/mcp/servers/{server_id}")


@pytest.fixture(scope="module")
def register(cleanup: list[str]) -> Callable[..., dict[str, Any]]:
    def make(client: httpx.Client, **body: Any) -> dict[str, Any]:
        resp = client.post("/api/mcp/servers", json=body)
        assert resp.status_code == 201, resp.text
        server: dict[str, Any] = resp.json()
        cleanup.append(server["id"])
        return server

    return make


def http_body(server: Proc, secret: str, **extra: Any) -> dict[str, Any]:
    return {"transport": "streamable_http", "url": server.url + "/mcp", "headers": {HEADER: secret}, **extra}


@pytest.fixture(scope="module")
def http_global(
    admin: httpx.Client, register: Callable[..., dict[str, Any]], http_server: Proc, header_secret: str
) -> dict[str, Any]:
    return register(admin, name="http tools", scope="global", **http_body(http_server, header_secret))


@pytest.fixture(scope="module")
def stdio_global(admin: httpx.Client, register: Callable[..., dict[str, Any]], env_secret: str) -> dict[str, Any]:
    body = {"transport": "stdio", "command": sys.executable, "args": [TOOLS_SCRIPT], "env": {"MCP_SECRET": env_secret}}
    return register(admin, name="stdio tools", scope="global", **body)


def call(client: httpx.Client, server_id: str, tool: str, **arguments: Any) -> httpx.Response:
    return client.post(f"/api/mcp/servers/{server_id}/tools/{tool}/call", json={"arguments": arguments})


def tools_of(client: httpx.Client, server_id: str) -> set[str] | None:
    """The names of one server's tools in the caller's /api/mcp/tools (None: the server is in none of its lists)."""
    resp = client.get("/api/mcp/tools")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    if any(e["server_id"] == server_id for e in body["errors"]):
        raise AssertionError(f"{server_id} failed: {body['errors']}")
    names = {t["name"] for t in body["tools"] if t["server_id"] == server_id}
    return names or None


def listed(client: httpx.Client, server_id: str) -> bool:
    resp = client.get("/api/mcp/servers", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    return any(s["id"] == server_id for s in resp.json()["data"])


# --- registration and secrets -------------------------------------------------------------------------------------
def test_http_server_registration_shows_header_names_never_values(
    admin: httpx.Client, http_global: dict[str, Any], header_secret: str
) -> None:
    assert http_global["scope"] == "global" and http_global["owner"] is None
    assert http_global["header_names"] == [HEADER] and http_global["has_headers"] is True
    assert http_global["transport"] == "streamable_http" and http_global["enabled"] is True
    for resp in (
        admin.get(f"/api/mcp/servers/{http_global['id']}"),
        admin.get("/api/mcp/servers", params={"limit": 500}),
        admin.get("/api/audit", params={"resource_type": "mcp_server", "limit": 500}),
    ):
        assert resp.status_code == 200, resp.text
        assert header_secret not in resp.text
    assert admin.get("/api/audit", params={"resource_type": "mcp_server", "limit": 500}).json()["data"]


def test_stdio_server_env_reaches_the_process_and_is_never_returned(
    admin: httpx.Client, stdio_global: dict[str, Any], env_secret: str
) -> None:
    assert stdio_global["env_names"] == ["MCP_SECRET"] and stdio_global["has_env"] is True
    assert stdio_global["command"] == sys.executable and stdio_global["args"] == [TOOLS_SCRIPT]
    resp = call(admin, stdio_global["id"], "env", name="MCP_SECRET")
    assert resp.status_code == 200, resp.text
    assert resp.json()["structured_content"] == {"set": True, "length": len(env_secret)}
    assert (
        call(admin, stdio_global["id"], "env", name="LISA_ENCRYPTION_KEY").json()["structured_content"]["set"] is False
    )
    shown = admin.get(f"/api/mcp/servers/{stdio_global['id']}")
    assert env_secret not in shown.text and shown.json()["process"]["state"] == "running"


def test_users_see_no_command_of_a_stdio_server(users: dict[str, httpx.Client], stdio_global: dict[str, Any]) -> None:
    shown = users["alice"].get(f"/api/mcp/servers/{stdio_global['id']}").json()
    assert shown["command"] is None and shown["args"] is None and shown["process"] is None
    assert shown["env_names"] == ["MCP_SECRET"]


def test_only_admins_register_global_or_stdio_servers(users: dict[str, httpx.Client], http_server: Proc) -> None:
    alice = users["alice"]
    resp = alice.post("/api/mcp/servers", json={"name": "g", "scope": "global", **http_body(http_server, "x")})
    assert resp.status_code == 403 and "admin" in resp.json()["detail"]
    stdio = {"name": "s", "transport": "stdio", "command": sys.executable, "args": [TOOLS_SCRIPT]}
    resp = alice.post("/api/mcp/servers", json=stdio)
    assert resp.status_code == 403 and "admins only" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"transport": "streamable_http"}, 400, "needs url"),
        ({"transport": "stdio", "url": "http://127.0.0.1:1/mcp", "command": "x"}, 400, "takes no url"),
        ({"transport": "stdio"}, 400, "needs command"),
        ({"transport": "streamable_http", "url": "http://127.0.0.1:1/mcp", "command": "x"}, 400, "takes no command"),
        ({"transport": "streamable_http", "url": "http://127.0.0.1:1/mcp", "headers": {"Host": "x"}}, 422, "host"),
        (
            {"transport": "streamable_http", "url": "http://127.0.0.1:1/mcp", "headers": {"A": "x\r\nB: y"}},
            422,
            "one line",
        ),
        (
            {"transport": "streamable_http", "url": "http://127.0.0.1:1/mcp", "headers": {"A": "clé"}},
            422,
            "printable ASCII",
        ),
        (
            {"transport": "streamable_http", "url": "http://127.0.0.1:1/mcp", "headers": {"bad name": "x"}},
            422,
            "headers",
        ),
        ({"transport": "stdio", "command": "x", "env": {"1X": "y"}}, 422, "env"),
        ({"transport": "streamable_http", "url": "http://127.0.0.1:1/mcp", "color": "red"}, 422, "color"),
        ({"transport": "websocket", "url": "http://127.0.0.1:1/mcp"}, 422, "transport"),
        ({"transport": "streamable_http", "url": "ftp://127.0.0.1/mcp"}, 422, "url"),
        ({"transport": "streamable_http", "url": "http://127.0.0.1:1/mcp", "allowed_groups": ["a"]}, 400, "personal"),
    ],
)
def test_bad_registrations_are_refused_and_not_written(
    admin: httpx.Client, body: dict[str, Any], status: int, fragment: str
) -> None:
    before = admin.get("/api/mcp/servers", params={"limit": 500}).json()["data"]
    resp = admin.post("/api/mcp/servers", json={"name": "refused", **body})
    assert resp.status_code == status, resp.text
    assert fragment in resp.json()["detail"], resp.text
    assert admin.get("/api/mcp/servers", params={"limit": 500}).json()["data"] == before


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://169.254.169.254/mcp", "169.254.169.254 is link-local (cloud metadata); not allowed"),
        ("http://10.0.0.1:8000/mcp", "10.0.0.1 is private; not allowed"),
        ("http://no-such-host.invalid/mcp", "does not resolve"),
    ],
)
def test_the_egress_guard_refuses_forbidden_urls(users: dict[str, httpx.Client], url: str, fragment: str) -> None:
    alice = users["alice"]
    resp = alice.post("/api/mcp/servers", json={"name": "egress", "transport": "streamable_http", "url": url})
    assert resp.status_code == 400, resp.text
    assert "MCP server 'egress': url: " in resp.json()["detail"] and fragment in resp.json()["detail"]
    assert not [s for s in alice.get("/api/mcp/servers").json()["data"] if s["name"] == "egress"]


def test_the_egress_guard_refuses_a_forbidden_url_on_update(admin: httpx.Client, http_global: dict[str, Any]) -> None:
    resp = admin.patch(f"/api/mcp/servers/{http_global['id']}", json={"url": "http://169.254.169.254/mcp"})
    assert resp.status_code == 400 and "cloud metadata" in resp.json()["detail"]
    assert admin.get(f"/api/mcp/servers/{http_global['id']}").json()["url"] == http_global["url"]


# --- tools over both transports -------------------------------------------------------------------------------------
def test_tools_of_both_transports_are_listed(
    users: dict[str, httpx.Client], http_global: dict[str, Any], stdio_global: dict[str, Any]
) -> None:
    expected = {"add", "echo", "fail", "slow", "big", "env", "crash"}
    assert tools_of(users["alice"], http_global["id"]) == expected
    assert tools_of(users["alice"], stdio_global["id"]) == expected
    tools = users["alice"].get("/api/mcp/tools").json()["tools"]
    add = next(t for t in tools if t["server_id"] == http_global["id"] and t["name"] == "add")
    assert add["description"] == "Add two integers." and add["server_name"] == "http tools"
    assert add["input_schema"]["required"] == ["a", "b"]


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_a_tool_is_called_over_each_transport(
    admin: httpx.Client, http_global: dict[str, Any], stdio_global: dict[str, Any], transport: str
) -> None:
    server = http_global if transport == "http" else stdio_global
    resp = call(admin, server["id"], "add", a=2, b=40)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["text"] == "42" and result["is_error"] is False and result["truncated"] is False
    assert result["content"] == [{"type": "text", "text": "42"}] and result["structured_content"] == {"result": 42}
    failed = call(admin, server["id"], "fail", message="it went wrong").json()
    assert failed["is_error"] is True and "it went wrong" in failed["text"]


def test_tool_errors_and_bad_calls(admin: httpx.Client, http_global: dict[str, Any]) -> None:
    bad_arguments = call(admin, http_global["id"], "add", a="x")
    assert bad_arguments.status_code == 200 and bad_arguments.json()["is_error"] is True
    missing = call(admin, http_global["id"], "no_such_tool")
    assert missing.status_code == 404 and "no_such_tool" in missing.json()["detail"]
    extra = admin.post(f"/api/mcp/servers/{http_global['id']}/tools/add/call", json={"arguments": {}, "x": 1})
    assert extra.status_code == 422


def test_output_is_bounded(admin: httpx.Client, stdio_global: dict[str, Any]) -> None:
    result = call(admin, stdio_global["id"], "big", chars=250_000).json()
    assert result["truncated"] is True and len(result["text"]) == 100_000
    assert sum(len(str(c)) for c in result["content"]) <= 100_000 + 100


def test_a_slow_tool_times_out_and_the_server_still_answers(
    admin: httpx.Client, stdio_global: dict[str, Any], http_global: dict[str, Any]
) -> None:
    for server in (stdio_global, http_global):
        started = time.monotonic()
        body = {"arguments": {"seconds": 30}, "timeout_seconds": 1}
        resp = admin.post(f"/api/mcp/servers/{server['id']}/tools/slow/call", json=body)
        assert resp.status_code == 504, resp.text
        assert "within 1s" in resp.json()["detail"] and time.monotonic() - started < 10
        assert call(admin, server["id"], "echo", text="still here").json()["text"] == "still here"


def test_users_try_only_their_own_servers_tools_by_hand(
    users: dict[str, httpx.Client], http_global: dict[str, Any]
) -> None:
    resp = call(users["alice"], http_global["id"], "add", a=1, b=1)
    assert resp.status_code == 403 and "admin" in resp.json()["detail"]


# --- who sees what ----------------------------------------------------------------------------------------------------
def test_personal_servers_are_their_owners_alone(
    admin: httpx.Client,
    users: dict[str, httpx.Client],
    register: Callable[..., dict[str, Any]],
    http_server: Proc,
    header_secret: str,
) -> None:
    alice, bob = users["alice"], users["bob"]
    mine = register(alice, name="alice's tools", **http_body(http_server, header_secret))
    assert mine["scope"] == "personal" and mine["owner"] == "mcp-alice"
    assert header_secret not in alice.get(f"/api/mcp/servers/{mine['id']}").text
    assert listed(alice, mine["id"]) and tools_of(alice, mine["id"])
    assert call(alice, mine["id"], "echo", text="hi").json()["text"] == "hi"
    path = f"/api/mcp/servers/{mine['id']}"
    for resp in (
        bob.get(path),
        bob.patch(path, json={"name": "bob's now"}),
        bob.delete(path),
        bob.get(path + "/tools"),
        call(bob, mine["id"], "echo", text="hi"),
    ):
        assert resp.status_code == 404, resp.text
    assert not listed(bob, mine["id"]) and tools_of(bob, mine["id"]) is None
    # Admins may see and manage it (all_users), but it is not among their own tools.
    assert not listed(admin, mine["id"])
    every = admin.get("/api/mcp/servers", params={"all_users": "true", "limit": 500}).json()["data"]
    assert any(s["id"] == mine["id"] for s in every)
    assert tools_of(admin, mine["id"]) is None
    assert bob.get("/api/mcp/servers", params={"all_users": "true"}).status_code == 403
    renamed = alice.patch(path, json={"name": "renamed", "description": "mine"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "renamed"
    assert alice.delete(path).status_code == 204 and alice.get(path).status_code == 404


def test_a_group_restricted_server_is_invisible_to_other_groups(
    admin: httpx.Client,
    users: dict[str, httpx.Client],
    register: Callable[..., dict[str, Any]],
    http_server: Proc,
    header_secret: str,
) -> None:
    team = register(admin, name="team-a tools", scope="global", allowed_groups=["team-a"],
                    **http_body(http_server, header_secret))  # fmt: skip
    alice, bob = users["alice"], users["bob"]
    assert listed(alice, team["id"]) and tools_of(alice, team["id"])
    assert not listed(bob, team["id"]) and tools_of(bob, team["id"]) is None
    assert bob.get(f"/api/mcp/servers/{team['id']}").status_code == 404
    assert alice.patch(f"/api/mcp/servers/{team['id']}", json={"name": "x"}).status_code == 403
    assert alice.delete(f"/api/mcp/servers/{team['id']}").status_code == 403


def test_a_disabled_server_is_not_listed(
    admin: httpx.Client,
    users: dict[str, httpx.Client],
    register: Callable[..., dict[str, Any]],
    http_server: Proc,
    header_secret: str,
) -> None:
    server = register(admin, name="toggled", scope="global", **http_body(http_server, header_secret))
    alice = users["alice"]
    assert tools_of(alice, server["id"])
    resp = admin.patch(f"/api/mcp/servers/{server['id']}", json={"enabled": False})
    assert resp.status_code == 200 and resp.json()["enabled"] is False
    assert tools_of(alice, server["id"]) is None and tools_of(admin, server["id"]) is None
    assert not listed(alice, server["id"]) and alice.get(f"/api/mcp/servers/{server['id']}").status_code == 404
    assert listed(admin, server["id"])
    assert call(admin, server["id"], "add", a=1, b=2).status_code == 409
    assert admin.patch(f"/api/mcp/servers/{server['id']}", json={"enabled": True}).status_code == 200
    assert tools_of(alice, server["id"])


def test_the_per_tool_allow_list_is_honoured(
    admin: httpx.Client,
    users: dict[str, httpx.Client],
    register: Callable[..., dict[str, Any]],
    http_server: Proc,
    header_secret: str,
) -> None:
    server = register(admin, name="narrow", scope="global", tools_allowed=["add", "echo"],
                      **http_body(http_server, header_secret))  # fmt: skip
    assert server["tools_allowed"] == ["add", "echo"]
    assert tools_of(users["alice"], server["id"]) == {"add", "echo"}
    assert call(admin, server["id"], "add", a=1, b=2).json()["text"] == "3"
    assert call(admin, server["id"], "fail").status_code == 404
    listing = admin.get(f"/api/mcp/servers/{server['id']}/tools").json()
    every = listing["tools"]
    assert {t["name"]: t["allowed"] for t in every}["fail"] is False and len(every) == 7 and listing["error"] is None
    widened = admin.patch(f"/api/mcp/servers/{server['id']}", json={"tools_allowed": None})
    assert widened.json()["tools_allowed"] is None and len(tools_of(users["alice"], server["id"]) or ()) == 7


# --- failures ---------------------------------------------------------------------------------------------------------
def test_a_dead_http_server_is_reported_in_errors(
    admin: httpx.Client, users: dict[str, httpx.Client], register: Callable[..., dict[str, Any]],
    http_global: dict[str, Any],
) -> None:  # fmt: skip
    dead = register(admin, name="dead", scope="global", transport="streamable_http",
                    url=f"http://127.0.0.1:{free_port()}/mcp")  # fmt: skip
    started = time.monotonic()
    resp = users["alice"].get("/api/mcp/tools")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    error = next(e for e in body["errors"] if e["server_id"] == dead["id"])
    assert error["server_name"] == "dead" and "connect" in error["error"], error
    assert any(t["server_id"] == http_global["id"] for t in body["tools"])  # the others still answer
    assert time.monotonic() - started < 10
    assert call(admin, dead["id"], "add", a=1, b=2).status_code == 502
    listing = admin.get(f"/api/mcp/servers/{dead['id']}/tools").json()
    assert listing["tools"] == [] and "connect" in listing["error"]


def test_a_wrong_header_is_reported_with_the_status(
    admin: httpx.Client, register: Callable[..., dict[str, Any]], http_server: Proc, header_secret: str
) -> None:
    server = register(admin, name="wrong key", scope="global", **http_body(http_server, "not-the-key"))
    error = next(e for e in admin.get("/api/mcp/tools").json()["errors"] if e["server_id"] == server["id"])
    assert "HTTP 401" in error["error"], error
    fixed = admin.patch(f"/api/mcp/servers/{server['id']}", json={"headers": {HEADER: header_secret}})
    assert fixed.status_code == 200 and fixed.json()["header_names"] == [HEADER]
    assert tools_of(admin, server["id"])


def test_a_crashed_stdio_server_is_started_again(admin: httpx.Client, stdio_global: dict[str, Any]) -> None:
    server_id = stdio_global["id"]
    assert call(admin, server_id, "add", a=1, b=1).json()["text"] == "2"
    before = admin.get(f"/api/mcp/servers/{server_id}").json()["process"]["restarts"]
    crashed = call(admin, server_id, "crash")
    assert crashed.status_code == 502 and "closed" in crashed.json()["detail"], crashed.text
    resp = call(admin, server_id, "add", a=20, b=22)  # waits for the process started again
    assert resp.status_code == 200 and resp.json()["text"] == "42", resp.text
    process = admin.get(f"/api/mcp/servers/{server_id}").json()["process"]
    assert process["state"] == "running" and process["restarts"] == before + 1
    assert "ended" in (process["last_error"] or "")


def hosted_processes(lisa: LisaServer, server_id: str) -> list[psutil.Process]:
    cwd = str(lisa.data_dir.resolve() / "mcp" / server_id)
    found = []
    for process in psutil.process_iter(["cwd"]):
        if process.info.get("cwd") == cwd:
            found.append(process)
    return found


def test_a_changed_environment_restarts_and_deleting_stops_the_process(
    admin: httpx.Client, lisa: LisaServer, register: Callable[..., dict[str, Any]]
) -> None:
    body = {"transport": "stdio", "command": sys.executable, "args": [TOOLS_SCRIPT], "env": {"GREETING": "hello"}}
    server = register(admin, name="short-lived", scope="global", **body)
    length = call(admin, server["id"], "env", name="GREETING").json()["structured_content"]["length"]
    assert length == 5 and len(hosted_processes(lisa, server["id"])) == 1
    changed = admin.patch(f"/api/mcp/servers/{server['id']}", json={"env": {"GREETING": "good morning"}})
    assert changed.status_code == 200 and changed.json()["env_names"] == ["GREETING"]
    assert call(admin, server["id"], "env", name="GREETING").json()["structured_content"]["length"] == 12
    assert admin.delete(f"/api/mcp/servers/{server['id']}").status_code == 204
    deadline = time.monotonic() + 15
    while hosted_processes(lisa, server["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not hosted_processes(lisa, server["id"])
    assert admin.get(f"/api/mcp/servers/{server['id']}").status_code == 404


def test_personal_servers_follow_the_mcp_connections_toggle(
    admin: httpx.Client,
    users: dict[str, httpx.Client],
    register: Callable[..., dict[str, Any]],
    http_server: Proc,
    header_secret: str,
) -> None:
    alice = users["alice"]
    mine = register(alice, name="alice's toggled tools", **http_body(http_server, header_secret))
    assert tools_of(alice, mine["id"])
    assert admin.patch("/api/configuration", json={"features": {"mcp_connections": False}}).status_code == 200
    try:
        refused = alice.post("/api/mcp/servers", json={"name": "another", **http_body(http_server, header_secret)})
        assert refused.status_code == 403 and "'mcp_connections'" in refused.json()["detail"], refused.text
        assert not any(t["server_id"] == mine["id"] for t in alice.get("/api/mcp/tools").json()["tools"])
        assert call(alice, mine["id"], "echo", text="hi").status_code in (403, 404)
    finally:
        assert admin.patch("/api/configuration", json={"features": {"mcp_connections": True}}).status_code == 200
    assert call(alice, mine["id"], "echo", text="hi").json()["text"] == "hi"
