"""Browser sign-in (the sign-in form, with an API token or the printed link's one-time code), server-side sessions,
and the API docs behind authentication."""

from __future__ import annotations

import httpx

from tests.backend.browser import browser, sign_in, signed_in
from tests.support import LisaServer


def test_anonymous_gets_nothing_but_health(lisa: LisaServer) -> None:
    with browser(lisa) as anon:
        assert anon.get("/health").status_code == 200
        for path in ("/docs", "/openapi.json", "/api/models", "/api/tokens"):
            resp = anon.get(path)
            assert resp.status_code == 401 and "missing credentials" in resp.json()["detail"], path
        assert anon.get("/").headers["location"] == "/ui/"  # the app (LISA_UI=false: the API docs)


def test_sign_in_with_a_token_sets_a_session_cookie(lisa: LisaServer, admin: httpx.Client) -> None:
    token = admin.post("/api/tokens", json={"name": "browser", "username": "bea", "groups": []}).json()
    with browser(lisa) as web:
        resp = sign_in(web, token["token"])
        assert resp.status_code == 303 and resp.headers["location"] == "/ui/"
        cookie = resp.headers["set-cookie"].lower()
        assert "lisa_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert token["token"] not in resp.headers["set-cookie"]  # the cookie holds a random session id only
        docs = web.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = web.get("/openapi.json").json()
        assert "/api/models" in spec["paths"] and "/api/tokens" in spec["paths"]
        assert web.get("/api/tokens").json()["data"][0]["username"] == "bea"
        # Revoking the token ends the session too.
        assert admin.delete(f"/api/tokens/{token['id']}").status_code == 204
        resp = web.get("/docs")
        assert resp.status_code == 401 and "revoked" in resp.json()["detail"]


def test_the_sign_in_page_changes_nothing(lisa: LisaServer) -> None:
    with browser(lisa) as web:
        page = web.get("/login")
        assert page.status_code == 200 and 'method="post"' in page.text and 'name="token"' in page.text
        assert "set-cookie" not in page.headers
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        # Not "no-referrer": browsers would then send the form's POST with "Origin: null", refused as cross-site.
        assert page.headers["referrer-policy"] == "same-origin"
        with_code = web.get("/login", params={"code": "some-code"})
        assert 'name="code" value="some-code"' in with_code.text and "set-cookie" not in with_code.headers
        hostile = web.get("/login", params={"code": '"><script>alert(1)</script>'})
        assert "<script>alert(1)" not in hostile.text


def test_bad_sign_in_and_logout(lisa: LisaServer) -> None:
    with browser(lisa) as web:
        resp = sign_in(web, "lisa_not-a-token")
        assert resp.status_code == 401 and "invalid" in resp.json()["detail"]
        assert "set-cookie" not in resp.headers
        missing = web.post("/login", data={})
        assert missing.status_code == 400 and "code or token" in missing.json()["detail"]
        assert sign_in(web, lisa.token).status_code == 303
        assert web.get("/openapi.json").status_code == 200
        page = web.get("/logout")  # a page with the sign-out button; still signed in
        assert page.status_code == 200 and 'action="/logout"' in page.text
        assert web.get("/openapi.json").status_code == 200
        out = web.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert web.get("/openapi.json").status_code == 401


def test_tampered_session_cookie_is_refused(lisa: LisaServer) -> None:
    with signed_in(lisa) as web:
        value = web.cookies["lisa_session"]
        web.cookies.clear()
        web.cookies.set("lisa_session", value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"))
        resp = web.get("/openapi.json")
        assert resp.status_code == 401 and "sign in again" in resp.json()["detail"]
