"""Cross-site request forgery (issue 9, item 9): what a browser session may be made to do from another site, and
JSON routes taking JSON only. Requests authenticated by a header are not a browser's, so not subject to it."""

from __future__ import annotations

import httpx

from tests.backend.browser import browser, signed_in
from tests.support import LisaServer

EVIL = "https://evil.example"


def test_a_cross_site_post_with_the_session_cookie_is_403(lisa: LisaServer) -> None:
    with signed_in(lisa) as web:
        attack = web.post("/api/tokens", json={"name": "stolen"}, headers={"Origin": EVIL})
        assert attack.status_code == 403 and "cross-site" in attack.json()["detail"]
        assert web.delete("/api/tokens/tok_x", headers={"Origin": EVIL}).status_code == 403
        assert web.post("/api/tokens", json={"name": "x"}, headers={"Origin": "null"}).status_code == 403
        bare = httpx.Client(base_url=lisa.url, cookies=web.cookies, timeout=30)  # no Origin, no Referer
        with bare:
            assert bare.post("/api/tokens", json={"name": "x"}).status_code == 403
            assert bare.post("/api/tokens", json={"name": "x"}, headers={"Referer": EVIL + "/page"}).status_code == 403
            # From this site: Referer when there is no Origin, or the custom header.
            same = bare.post("/api/tokens", json={"name": "by-referer"}, headers={"Referer": lisa.url + "/docs"})
            assert same.status_code == 201, same.text
            custom = bare.post("/api/tokens", json={"name": "by-header"}, headers={"X-LISA-CSRF": "1"})
            assert custom.status_code == 201, custom.text
        mine = web.post("/api/tokens", json={"name": "same-site"})  # Origin: this site
        assert mine.status_code == 201, mine.text
        assert web.get("/api/tokens").status_code == 200  # safe methods need nothing


def test_the_site_may_be_named_by_its_host(lisa: LisaServer) -> None:
    """Behind a proxy the browser's Origin is the public name, which reaches LISA as the Host header."""
    with signed_in(lisa) as web:
        proxied = web.post(
            "/api/tokens",
            json={"name": "via-proxy"},
            headers={"Origin": "https://lisa.example", "Host": "lisa.example"},
        )
        assert proxied.status_code == 201, proxied.text


def test_sign_in_and_sign_out_from_another_site_are_refused(lisa: LisaServer) -> None:
    with browser(lisa, origin=EVIL) as evil:
        login = evil.post("/login", data={"token": lisa.token})
        assert login.status_code == 403 and "set-cookie" not in login.headers
    with signed_in(lisa) as web:
        assert web.post("/logout", headers={"Origin": EVIL}).status_code == 403
        assert web.get("/api/tokens").status_code == 200  # still signed in


def test_header_credentials_are_not_subject_to_the_site_check(admin: httpx.Client) -> None:
    resp = admin.post("/api/tokens", json={"name": "api"}, headers={"Origin": EVIL})
    assert resp.status_code == 201, resp.text


def test_json_routes_take_json_only(lisa: LisaServer, admin: httpx.Client) -> None:
    form = admin.post("/api/tokens", data={"name": "form"})
    assert form.status_code == 415 and "application/json" in form.json()["detail"]
    text = admin.post("/api/tokens", content=b'{"name": "t"}', headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    suffixed = admin.post("/api/tokens", content=b'{"name": "t"}', headers={"Content-Type": "application/merge+json"})
    assert suffixed.status_code == 201, suffixed.text
    with signed_in(lisa) as web:  # the classic CSRF body: a form posted to a JSON route, even from this site
        assert web.post("/api/tokens", data={"name": "form"}).status_code == 415
