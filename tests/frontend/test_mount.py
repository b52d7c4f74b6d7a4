"""The app mounted at /ui: who gets in (the request guard's rules, as for every path), and what the address says."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx

from tests.backend.browser import signed_in
from tests.support import LisaServer


def test_only_a_valid_credential_opens_the_app(lisa: LisaServer, admin: httpx.Client) -> None:
    user = admin.post("/api/tokens", json={"name": "ui-mount", "username": "ui-mount"}).json()
    revoked = admin.post("/api/tokens", json={"name": "ui-revoked", "username": "ui-revoked"}).json()
    assert admin.delete(f"/api/tokens/{revoked['id']}").status_code == 204
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    expiring = admin.post("/api/tokens", json={"name": "ui-exp", "username": "ui-exp", "expires_at": soon}).json()
    with httpx.Client(base_url=lisa.url, timeout=30, follow_redirects=False) as web:
        config = web.get("/ui/config", headers={"Authorization": f"Bearer {user['token']}"})
        assert config.status_code == 200 and config.json()["mode"] == "blocks"
        assert config.json()["analytics_enabled"] is False  # Gradio reports nothing to anyone
        time.sleep(1.2)
        for token in (revoked["token"], expiring["token"], "lisa_not-a-token"):
            resp = web.get("/ui/config", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 401, (token[:8], resp.status_code)
        # A browser navigation without a session goes to the sign-in page; the app's API calls get the 401.
        page = web.get("/ui/", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert web.get("/ui/gradio_api/info").status_code == 401


def test_signed_in_browser_opens_the_app_and_a_post_from_another_site_is_refused(lisa: LisaServer) -> None:
    with signed_in(lisa) as web:
        page = web.get("/ui/", headers={"Accept": "text/html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        # Joining the event queue with the session cookie from another site's page: the cross-site check refuses.
        evil = web.post(
            "/ui/gradio_api/queue/join", json={"fn_index": 0, "data": [], "session_hash": "x"},
            headers={"Origin": "https://evil.example"},
        )  # fmt: skip
        assert evil.status_code == 403 and "cross-site" in evil.json()["detail"]


def test_lisa_serve_prints_the_apps_address() -> None:
    from backend.config import Settings
    from backend.runtime.launch import _banner

    address = "http://127.0.0.1:8080"
    assert f"App:                  {address}/ui/" in _banner(address, [], None, Settings())
    assert "App:" not in _banner(address, [], None, Settings(ui=False))
