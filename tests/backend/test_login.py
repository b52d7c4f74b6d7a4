"""Browser sign-in with the printed link, and the API docs behind authentication."""

from __future__ import annotations

import httpx

from tests.support import LisaServer


def browser(lisa: LisaServer) -> httpx.Client:
    return httpx.Client(base_url=lisa.url, timeout=30, follow_redirects=False)


def test_anonymous_gets_nothing_but_health(lisa: LisaServer) -> None:
    with browser(lisa) as anon:
        assert anon.get("/health").status_code == 200
        for path in ("/docs", "/openapi.json", "/api/models", "/api/tokens"):
            resp = anon.get(path)
            assert resp.status_code == 401 and "missing credentials" in resp.json()["detail"], path
        assert anon.get("/").headers["location"] == "/docs"


def test_sign_in_link_sets_a_session_cookie(lisa: LisaServer, admin: httpx.Client) -> None:
    token = admin.post("/api/tokens", json={"name": "browser", "username": "bea", "groups": []}).json()
    with browser(lisa) as web:
        resp = web.get("/login", params={"token": token["token"]})
        assert resp.status_code == 303 and resp.headers["location"] == "/docs"
        cookie = resp.headers["set-cookie"].lower()
        assert "lisa_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert token["token"] not in resp.headers["set-cookie"]  # the session holds a hash, not the secret
        docs = web.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = web.get("/openapi.json").json()
        assert "/api/models" in spec["paths"] and "/api/tokens" in spec["paths"]
        assert web.get("/api/tokens").json()["data"][0]["username"] == "bea"
        # Revoking the token ends the session too.
        assert admin.delete(f"/api/tokens/{token['id']}").status_code == 204
        resp = web.get("/docs")
        assert resp.status_code == 401 and "revoked" in resp.json()["detail"]


def test_bad_link_and_logout(lisa: LisaServer) -> None:
    with browser(lisa) as web:
        resp = web.get("/login", params={"token": "lisa_not-a-token"})
        assert resp.status_code == 401 and "invalid" in resp.json()["detail"]
        assert "set-cookie" not in resp.headers
        assert web.get("/login").status_code == 422
        assert web.get("/login", params={"token": lisa.token}).status_code == 303
        assert web.get("/openapi.json").status_code == 200
        assert web.get("/logout").status_code == 303
        assert web.get("/openapi.json").status_code == 401


def test_tampered_session_cookie_is_ignored(lisa: LisaServer) -> None:
    with browser(lisa) as web:
        web.get("/login", params={"token": lisa.token})
        value = web.cookies["lisa_session"]
        web.cookies.clear()
        web.cookies.set("lisa_session", value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"))
        assert web.get("/openapi.json").status_code == 401
