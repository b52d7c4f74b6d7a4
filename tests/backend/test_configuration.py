"""/api/configuration: versioned toggles, banner and default model; who changed what; environment pins that win and
are shown; the toggles enforced by the backend (403 naming the toggle), in this process and in a second one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from backend.config import Settings
from backend.configuration.features import FEATURES, Feature
from backend.configuration.pins import pinned_by, pins_from
from tests.backend.rag.helpers import fresh_repository, upload
from tests.support import LisaServer, start_lisa

CLEAN: dict[str, Any] = {"features": {}, "banner": {}, "default_model_id": None}
REPO = "cfg-toggles"
TEXTGEN = "gemma3-270m"  # the session server's local models
EMBEDDING = "minilm-l6-v2"


def make_token(admin: httpx.Client, name: str, groups: list[str]) -> str:
    resp = admin.post("/api/tokens", json={"name": name, "username": name, "groups": groups})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["token"])


@pytest.fixture(scope="module")
def user(lisa: LisaServer, admin: httpx.Client) -> Iterator[httpx.Client]:
    with lisa.client(make_token(admin, "cfg-user", [])) as client:
        yield client


@pytest.fixture(scope="module")
def rag_admin(lisa: LisaServer, admin: httpx.Client) -> Iterator[httpx.Client]:
    with lisa.client(make_token(admin, "cfg-rag-admin", ["rag-admin"])) as client:
        yield client


@pytest.fixture(autouse=True)
def clean_configuration(admin: httpx.Client) -> Iterator[None]:
    """Each test starts from, and leaves, nothing stored: the session's other tests see the defaults."""
    assert admin.put("/api/configuration", json=CLEAN).status_code == 200
    yield
    assert admin.put("/api/configuration", json=CLEAN).status_code == 200


def configuration(client: httpx.Client) -> dict[str, Any]:
    resp = client.get("/api/configuration")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def set_feature(admin: httpx.Client, feature: str, value: bool | None) -> dict[str, Any]:
    resp = admin.patch("/api/configuration", json={"features": {feature: value}})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_everyone_reads_every_toggle_with_its_source(user: httpx.Client, admin: httpx.Client) -> None:
    body = configuration(user)
    assert set(body["features"]) == {f.value for f in Feature} and len(body["features"]) == 15
    for name, state in body["features"].items():
        assert state["source"] == "default" and state["stored"] is None and state["pinned_by"] is None
        assert state["enabled"] == state["default"] == FEATURES[Feature(name)].default
    assert body["features"]["mcp_connections"]["enabled"] is False  # risky: off until an admin turns it on
    assert body["features"]["mcp_connections"]["allowed"] is False
    assert configuration(admin)["features"]["mcp_connections"]["allowed"] is True  # admins are exempt
    assert body["banner"] == {"enabled": False, "text": "", "text_color": None, "background_color": None}
    assert body["default_model_id"] is None and body["updated_by"] is None


def test_admin_writes_and_the_history_says_who_changed_what(admin: httpx.Client, user: httpx.Client) -> None:
    me = admin.get("/api/users/me").json()["username"]
    start = configuration(admin)["version"]
    banner = {"enabled": True, "text": "Maintenance at 18:00 UTC", "background_color": "#FFCC00"}
    resp = admin.patch(
        "/api/configuration",
        json={"features": {"view_meta_data": False}, "banner": banner, "default_model_id": TEXTGEN},
    )
    assert resp.status_code == 200, resp.text
    written = resp.json()
    assert written["version"] == start + 1 and written["updated_by"] == me
    assert written["features"]["view_meta_data"] == {**written["features"]["view_meta_data"], "enabled": False,
                                                     "source": "stored", "stored": False}  # fmt: skip
    seen = configuration(user)  # everyone reads the same, less who wrote it
    assert seen["version"] == start + 1 and seen["updated_by"] is None
    assert seen["banner"]["text"] == banner["text"] and seen["banner"]["text_color"] is None
    assert seen["default_model_id"] == TEXTGEN and seen["features"]["view_meta_data"]["enabled"] is False

    set_feature(admin, "view_meta_data", None)  # back to the default, and it says so
    state = configuration(user)["features"]["view_meta_data"]
    assert state["source"] == "default" and state["enabled"] is True and state["stored"] is None
    unchanged = admin.patch("/api/configuration", json={"features": {"view_meta_data": None}})
    assert unchanged.json()["version"] == start + 2  # a write that changes nothing makes no version

    history = admin.get("/api/configuration/history", params={"limit": 1})
    assert history.status_code == 200
    newest = history.json()["data"][0]
    assert newest["version"] == start + 2 and newest["created_by"] == me and newest["restored_from"] is None
    assert newest["changes"] == [{"field": "features.view_meta_data", "before": False, "after": None}]
    older = admin.get("/api/configuration/history", params={"limit": 1, "cursor": history.json()["next_cursor"]})
    first = older.json()["data"][0]
    assert first["version"] == start + 1 and first["created_by"] == me
    assert {c["field"] for c in first["changes"]} == {"features.view_meta_data", "banner", "default_model_id"}
    assert admin.get(f"/api/configuration/history/{start + 1}").json() == first

    restored = admin.post(f"/api/configuration/history/{start + 1}/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["version"] == start + 3 and restored.json()["features"]["view_meta_data"]["enabled"] is False
    latest = admin.get("/api/configuration/history", params={"limit": 1}).json()["data"][0]
    assert latest["restored_from"] == start + 1 and latest["changes"][0]["field"] == "features.view_meta_data"
    assert admin.post("/api/configuration/history/999999/restore").status_code == 404
    assert admin.get("/api/configuration/history/999999").status_code == 404
    events = admin.get("/api/audit", params={"resource_type": "configuration", "limit": 3}).json()["data"]
    assert [e["action"] for e in events] == ["configuration.restore", "configuration.update", "configuration.update"]


def test_put_replaces_what_is_stored(admin: httpx.Client) -> None:
    set_feature(admin, "edit_kwargs", False)
    body = {"features": {"upload_context_docs": False}, "banner": {}, "default_model_id": None}
    replaced = admin.put("/api/configuration", json=body).json()["features"]
    assert replaced["edit_kwargs"]["source"] == "default" and replaced["edit_kwargs"]["enabled"] is True
    assert replaced["upload_context_docs"]["source"] == "stored" and replaced["upload_context_docs"]["enabled"] is False


def test_only_admins_write(user: httpx.Client, rag_admin: httpx.Client, admin: httpx.Client) -> None:
    version = configuration(admin)["version"]
    for client in (user, rag_admin):
        assert client.patch("/api/configuration", json={"features": {"model_library": False}}).status_code == 403
        assert client.put("/api/configuration", json=CLEAN).status_code == 403
        assert client.get("/api/configuration/history").status_code == 403
        assert client.post(f"/api/configuration/history/{max(version, 1)}/restore").status_code == 403
    assert configuration(admin)["version"] == version


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"features": {"ragselection": True}}, 422, "ragselection"),  # unknown toggles are refused, named
        ({"features": {"model_library": "perhaps"}}, 422, "model_library"),
        ({"feature": {"model_library": False}}, 422, "feature"),  # no undocumented fields
        ({"banner": {"enabled": True, "text": "  "}}, 422, "text"),
        ({"banner": {"text": "x", "text_color": "red"}}, 422, "text_color"),
        ({"banner": {"text": "nul \u0000 byte"}}, 422, "NUL"),
        ({"banner": {"text": "x" * 2001}}, 422, "text"),
        ({"default_model_id": "no-such-model"}, 400, "no-such-model"),
        ({"default_model_id": EMBEDDING}, 400, "textgen"),
        ({"default_model_id": "bad id with spaces"}, 422, "default_model_id"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    admin: httpx.Client, body: dict[str, Any], status: int, words: str
) -> None:
    version = configuration(admin)["version"]
    sent = body if "features" in body else {**body, "features": {"edit_kwargs": False}}  # a valid part alongside
    resp = admin.patch("/api/configuration", json=sent)
    assert resp.status_code == status and words in resp.json()["detail"], resp.text
    assert configuration(admin)["version"] == version  # nothing half-written, the valid part neither
    assert admin.put("/api/configuration", json={"features": {}}).status_code == 422  # PUT needs every part


def _toggle_test(
    admin: httpx.Client, feature: str, call: Callable[[], httpx.Response], ok: int, exempt: Callable[[], httpx.Response]
) -> None:
    set_feature(admin, feature, False)
    refused = call()
    assert refused.status_code == 403, refused.text
    assert f"'{feature}'" in refused.json()["detail"] and "administrator" in refused.json()["detail"]
    assert exempt().status_code == ok
    set_feature(admin, feature, True)
    assert call().status_code == ok


def test_toggles_are_enforced_by_the_backend(admin: httpx.Client, user: httpx.Client, rag_admin: httpx.Client) -> None:
    fresh_repository(admin, REPO)
    files = {"toggle.txt": b"Feature toggles are enforced by the backend."}
    _toggle_test(
        admin, "upload_rag_docs", lambda: upload(user, REPO, files), 202, lambda: upload(rag_admin, REPO, files)
    )
    documents = f"/api/repositories/{REPO}/documents"
    _toggle_test(admin, "show_rag_library", lambda: user.get(documents), 200, lambda: rag_admin.get(documents))
    _toggle_test(admin, "model_library", lambda: user.get("/api/models"), 200, lambda: admin.get("/api/models"))
    set_feature(admin, "model_library", False)
    assert user.get(f"/api/models/{TEXTGEN}").status_code == 403
    assert user.get("/v1/models").status_code == 200  # OpenAI clients still pick a model
    _toggle_test(
        admin,
        "enable_user_api_tokens",
        lambda: user.post("/api/tokens", json={"name": "own"}),
        201,
        lambda: admin.post("/api/tokens", json={"name": "admin-own"}),
    )
    admin.delete(f"/api/repositories/{REPO}")


def test_the_prompt_library_toggles_are_enforced(admin: httpx.Client, user: httpx.Client) -> None:
    body = {"kind": "persona", "title": "toggle persona", "body": "You are terse."}
    _toggle_test(
        admin,
        "edit_prompt_template",
        lambda: user.post("/api/prompt-templates", json=body),
        201,
        lambda: admin.post("/api/prompt-templates", json=body),
    )
    own = user.post("/api/prompt-templates", json=body).json()["id"]
    set_feature(admin, "edit_prompt_template", False)
    edit = user.patch(f"/api/prompt-templates/{own}", json={"body": "changed"})
    assert edit.status_code == 403 and "edit_prompt_template" in edit.json()["detail"]
    assert user.delete(f"/api/prompt-templates/{own}").status_code == 403
    set_feature(admin, "edit_prompt_template", None)
    _toggle_test(
        admin,
        "show_prompt_template_library",
        lambda: user.get("/api/prompt-templates"),
        200,
        lambda: admin.get("/api/prompt-templates"),
    )
    set_feature(admin, "show_prompt_template_library", False)
    assert user.get(f"/api/prompt-templates/{own}").status_code == 403
    set_feature(admin, "show_prompt_template_library", None)
    assert user.get(f"/api/prompt-templates/{own}").json()["body"] == "You are terse."  # nothing was changed
    assert user.delete(f"/api/prompt-templates/{own}").status_code == 204


def test_a_second_backend_process_sees_a_change_without_restart(
    admin: httpx.Client, lisa_peer: LisaServer, user: httpx.Client
) -> None:
    with lisa_peer.client(user.headers["Authorization"].removeprefix("Bearer ")) as peer:
        assert configuration(peer)["features"]["model_library"]["enabled"] is True
        assert peer.get("/api/models").status_code == 200  # the peer has read (and cached) the configuration
        version = set_feature(admin, "model_library", False)["version"]
        deadline = time.monotonic() + 10
        while configuration(peer)["version"] != version:
            assert time.monotonic() < deadline, "the peer still serves the old configuration"
            time.sleep(0.05)
        resp = peer.get("/api/models")
        assert resp.status_code == 403 and "'model_library'" in resp.json()["detail"]


# --- pinned by the environment ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pinned(lisa: LisaServer, session_tmp: Path) -> Iterator[LisaServer]:
    """A backend process on the session's database whose environment pins two toggles."""
    server = start_lisa(
        session_tmp / "cfg-pinned",
        local_models=False,
        database_url=lisa.database_url,
        token=lisa.token,
        env={
            "LISA_BOOTSTRAP_ADMIN": "false",
            "LISA_RAG_WORKER": "false",
            "LISA_FEATURES__UPLOAD_RAG_DOCS": "false",
            "LISA_FEATURES__MCP_CONNECTIONS": "true",
        },
    )
    yield server
    server.proc.stop()


def test_a_pinned_toggle_wins_is_shown_and_refuses_writes(
    pinned: LisaServer, admin: httpx.Client, user: httpx.Client
) -> None:
    set_feature(admin, "upload_rag_docs", True)  # stored through the unpinned process
    token = user.headers["Authorization"].removeprefix("Bearer ")
    with pinned.client() as pinned_admin, pinned.client(token) as pinned_user:
        state = configuration(pinned_user)["features"]["upload_rag_docs"]
        assert state == {**state, "enabled": False, "source": "environment", "stored": True,
                         "pinned_by": "LISA_FEATURES__UPLOAD_RAG_DOCS", "allowed": False}  # fmt: skip
        mcp = configuration(pinned_user)["features"]["mcp_connections"]
        assert mcp["enabled"] is True and mcp["source"] == "environment" and mcp["default"] is False

        version = configuration(pinned_admin)["version"]
        for resp in (
            pinned_admin.patch("/api/configuration", json={"features": {"upload_rag_docs": None}}),
            pinned_admin.put("/api/configuration", json={**CLEAN, "features": {"mcp_connections": False}}),
        ):
            assert resp.status_code == 409, resp.text
            assert "LISA_FEATURES__" in resp.json()["detail"]
        assert configuration(pinned_admin)["version"] == version
        # PUT leaves a pinned toggle's stored value as it is; other toggles are written as asked.
        replaced = pinned_admin.put("/api/configuration", json={**CLEAN, "features": {"edit_kwargs": False}})
        assert replaced.status_code == 200 and replaced.json()["features"]["upload_rag_docs"]["stored"] is True

        fresh_repository(admin, REPO)
        refused = upload(pinned_user, REPO, {"a.txt": b"pinned off"})
        assert refused.status_code == 403
        assert "'upload_rag_docs'" in refused.json()["detail"]
        assert "LISA_FEATURES__UPLOAD_RAG_DOCS" in refused.json()["detail"]
        assert upload(user, REPO, {"a.txt": b"stored on"}).status_code == 202  # the unpinned process: stored value
        admin.delete(f"/api/repositories/{REPO}")


def test_settings_pins_are_named_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISA_FEATURES__UPLOAD_RAG_DOCS", "false")
    settings = Settings()
    assert settings.features == {"upload_rag_docs": False}
    pins = pins_from(settings)
    assert pins[Feature.upload_rag_docs].value is False
    assert pins[Feature.upload_rag_docs].setting == "LISA_FEATURES__UPLOAD_RAG_DOCS"
    assert pinned_by("model_library", {"LISA_FEATURES": "{}"}) == "LISA_FEATURES"
    assert "LISA_CONFIG_FILE" in pinned_by("model_library", {"LISA_CONFIG_FILE": "/etc/lisa.yaml"})
    monkeypatch.setenv("LISA_FEATURES__RAGSELECTION", "true")
    with pytest.raises(ValidationError, match="ragselection"):
        Settings()
