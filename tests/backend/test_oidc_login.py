"""End to end against a real OIDC provider process (oidc-provider-mock): discovery, browser sign-in with the
authorization code flow and PKCE, the session, logout, and the provider's JWTs as API bearer tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support import LisaServer, Proc, free_port, start_lisa, start_process

CLIENT_ID = "lisa-client"
USERS = {
    "alice": ["staff", "admin"],
    "bob": ["staff", "api-users"],
    "carl": ["staff"],
    "eve": ["contractors"],
}
TOKEN_SECONDS = 4


def start_provider(tmp: Path, *args: str) -> Proc:
    port = free_port()
    argv = [sys.executable, "-m", "oidc_provider_mock", "--port", str(port), *args]
    return start_process(argv, port=port, log=tmp / "provider.log", health="/.well-known/openid-configuration")


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    args = ["--token-max-age", str(TOKEN_SECONDS)]
    for user, groups in USERS.items():
        args += ["--user-claims", json.dumps({"sub": user, "preferred_username": user, "cognito:groups": groups})]
    proc = start_provider(tmp_path_factory.mktemp("oidc"), *args)
    yield proc
    proc.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def lisa_sso(provider: Proc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LisaServer]:
    server = start_lisa(
        tmp_path_factory.mktemp("sso") / "data",
        local_models=False,
        env={
            "LISA_OIDC_ISSUER": provider.url,
            "LISA_OIDC_CLIENT_ID": CLIENT_ID,
            "LISA_OIDC_CLIENT_SECRET": "client-secret",
            "LISA_OIDC_GROUPS_CLAIM": "cognito:groups",
            "LISA_OIDC_LEEWAY_SECONDS": "0",
            "LISA_USER_GROUP": "staff",
            "LISA_API_GROUP": "api-users",
            "AUTHLIB_INSECURE_TRANSPORT": "1",  # the test provider speaks plain HTTP on loopback
        },
    )
    yield server
    server.proc.stop()


def browser_sign_in(lisa: LisaServer, provider: Proc, user: str) -> tuple[httpx.Client, httpx.Response]:
    web = httpx.Client(base_url=lisa.url, timeout=30, follow_redirects=False, headers={"Origin": lisa.url})
    start = web.get("/auth/login")
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(provider.url + "/oauth2/authorize")
    assert query["client_id"] == [CLIENT_ID] and query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["redirect_uri"] == [lisa.url + "/auth/callback"]
    consent = httpx.post(authorize, data={"sub": user}, follow_redirects=False, timeout=30)
    assert consent.status_code == 302, consent.text
    callback = consent.headers["location"]
    assert callback.startswith(lisa.url + "/auth/callback?")
    return web, web.get(callback.removeprefix(lisa.url))


def provider_tokens(provider: Proc, user: str, client_id: str = CLIENT_ID) -> dict:
    """Act as an OAuth client ourselves (code flow + PKCE) to get the provider's tokens for ``user``."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = "http://127.0.0.1:9/cb"
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid profile",
        "state": "s", "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    consent = httpx.post(f"{provider.url}/oauth2/authorize?{urlencode(params)}", data={"sub": user}, timeout=30)
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
    token_url = httpx.get(f"{provider.url}/.well-known/openid-configuration").json()["token_endpoint"]
    form = {
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "client_id": client_id,
        "client_secret": "client-secret", "code_verifier": verifier,
    }  # fmt: skip
    resp = httpx.post(token_url, data=form, timeout=30)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_browser_sign_in_session_and_logout(lisa_sso: LisaServer, provider: Proc) -> None:
    web, done = browser_sign_in(lisa_sso, provider, "carl")
    with closing(web):
        assert done.status_code == 303 and "lisa_session=" in done.headers["set-cookie"]
        tokens = web.get("/api/tokens")
        assert tokens.status_code == 200 and tokens.json()["data"] == []
        assert web.get("/openapi.json").status_code == 200
        assert (
            web.post(
                "/api/models", json={"id": "x", "type": "textgen", "hosting": "internal", "base_url": "http://h/v1"}
            ).status_code
            == 403
        )
        # carl lacks the API group: he may not mint tokens for himself.
        assert web.post("/api/tokens", json={"name": "nb"}).status_code == 403
        copied = web.cookies["lisa_session"]
        out = web.post("/logout")
        assert out.status_code == 303 and out.headers["location"].startswith(provider.url)
        assert "post_logout_redirect_uri" in out.headers["location"]
        assert web.get("/api/tokens").status_code == 401
    # The session ended server-side: a copy of the cookie is worth nothing.
    assert httpx.get(lisa_sso.url + "/api/tokens", cookies={"lisa_session": copied}, timeout=30).status_code == 401


def test_admin_group_from_claims(lisa_sso: LisaServer, provider: Proc) -> None:
    web, done = browser_sign_in(lisa_sso, provider, "alice")
    with closing(web):
        assert done.status_code == 303
        body = {"id": "sso-model", "type": "textgen", "hosting": "internal", "base_url": "http://127.0.0.1:1/v1"}
        assert web.post("/api/models", json=body).status_code == 201
        assert web.get("/api/usage").status_code == 200


def test_user_outside_the_user_group_is_refused(lisa_sso: LisaServer, provider: Proc) -> None:
    web, done = browser_sign_in(lisa_sso, provider, "eve")
    with closing(web):
        assert done.status_code == 403 and "staff" in done.json()["detail"]
        assert web.get("/api/tokens").status_code == 401  # no session was created
    bearer = provider_tokens(provider, "eve")["id_token"]
    assert httpx.get(lisa_sso.url + "/v1/models", headers={"Authorization": f"Bearer {bearer}"}).status_code == 403


def test_provider_jwt_as_bearer_and_api_group_tokens(lisa_sso: LisaServer, provider: Proc) -> None:
    id_token = provider_tokens(provider, "bob")["id_token"]
    api = httpx.Client(base_url=lisa_sso.url, headers={"Authorization": f"Bearer {id_token}"}, timeout=30)
    with api:
        assert api.get("/v1/models").status_code == 200
        assert api.get("/api/models").status_code == 200
        # bob is in the API group: his own token carries his groups, narrowed on request.
        created = api.post("/api/tokens", json={"name": "notebook", "groups": ["staff"]})
        assert (
            created.status_code == 201
            and created.json()["display_name"] == "bob"
            and created.json()["groups"] == ["staff"]
        )
        assert api.post("/api/tokens", json={"name": "wider", "groups": ["admin"]}).status_code == 403
        mine = httpx.get(lisa_sso.url + "/v1/models", headers={"Authorization": f"Bearer {created.json()['token']}"})
        assert mine.status_code == 200
        time.sleep(TOKEN_SECONDS + 1)
        expired = api.get("/v1/models")
        assert expired.status_code == 401 and "exp" in expired.json()["error"]["message"]


def test_sign_in_errors(lisa_sso: LisaServer, lisa: LisaServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=lisa_sso.url, follow_redirects=False, timeout=30) as web:
        bad = web.get("/auth/callback", params={"code": "forged", "state": "forged"})
        assert bad.status_code == 401 and "sign-in failed" in bad.json()["detail"]
    # Without OIDC configured, single sign-on routes say so.
    assert httpx.get(lisa.url + "/auth/login").status_code == 404


@pytest.fixture(scope="module")
def stranger_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A second provider: another issuer, with keys LISA has never seen."""
    proc = start_provider(tmp_path_factory.mktemp("oidc2"), "--user", "bob")
    yield proc
    proc.stop(signal.SIGKILL)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_forged_and_foreign_bearer_tokens_are_401(
    lisa_sso: LisaServer, provider: Proc, stranger_provider: Proc
) -> None:
    def status_and_message(token: str) -> tuple[int, str]:
        resp = httpx.get(lisa_sso.url + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        return resp.status_code, resp.json()["error"]["message"]

    good = provider_tokens(provider, "bob")["id_token"]
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    # Tampered: bob promotes himself; the signature no longer matches.
    tampered = f"{header}.{_b64({**claims, 'cognito:groups': ['staff', 'admin']})}.{signature}"
    assert status_and_message(tampered)[0] == 401
    # alg "none": no signature at all.
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    assert status_and_message(unsigned) == (401, "token algorithm 'none' is not accepted")
    # Wrong audience: a genuine token from the right provider, issued to another client.
    other_audience = provider_tokens(provider, "bob", client_id="some-other-app")["id_token"]
    code, message = status_and_message(other_audience)
    assert code == 401 and "aud" in message
    # Another provider (another issuer, another private key; this mock reuses its kid, so the signature fails).
    code, message = status_and_message(provider_tokens(stranger_provider, "bob")["id_token"])
    assert code == 401 and any(m in message for m in ("unknown key", "bad_signature", "iss"))
