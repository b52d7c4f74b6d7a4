"""Identity against a real OIDC provider process: users are keyed on issuer + sub (never on an editable name), API
tokens follow their owner's current groups, and no token outlives the credential that created it."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.backend.test_oidc_login import CLIENT_ID, browser_sign_in, provider_tokens, start_provider
from tests.support import LisaServer, Proc, free_port, start_lisa

REFRESH_HOURS = 0.002  # 7.2 s: groups not re-confirmed within this stop counting for the user's API tokens
JWT_SECONDS = 600
TEAM_MODEL = "team-x-only"
USERS = {
    # Two provider accounts that both set preferred_username "sam": two people, whatever they call themselves.
    "sam-1": {"preferred_username": "sam", "cognito:groups": ["staff", "api-users"]},
    "sam-2": {"preferred_username": "sam", "cognito:groups": ["staff", "api-users"]},
    "dana": {"preferred_username": "dana", "cognito:groups": ["staff", "api-users", "team-x"]},
    "erin": {"preferred_username": "erin", "cognito:groups": ["staff", "api-users", "team-x"]},
}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    args = ["--token-max-age", str(JWT_SECONDS)]
    for sub, claims in USERS.items():
        args += ["--user-claims", json.dumps({"sub": sub, **claims})]
    proc = start_provider(tmp_path_factory.mktemp("oidc-identity"), *args)
    yield proc
    proc.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def sso(provider: Proc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LisaServer]:
    server = start_lisa(
        tmp_path_factory.mktemp("sso-identity") / "data",
        local_models=False,
        env={
            "LISA_OIDC_ISSUER": provider.url,
            "LISA_OIDC_CLIENT_ID": CLIENT_ID,
            "LISA_OIDC_CLIENT_SECRET": "client-secret",
            "LISA_OIDC_GROUPS_CLAIM": "cognito:groups",
            "LISA_USER_GROUP": "staff",
            "LISA_API_GROUP": "api-users",
            "LISA_GROUP_REFRESH_HOURS": str(REFRESH_HOURS),
            "AUTHLIB_INSECURE_TRANSPORT": "1",
        },
    )
    with server.client() as admin:
        body = {"id": TEAM_MODEL, "type": "textgen", "hosting": "internal",
                "base_url": f"http://127.0.0.1:{free_port()}/v1", "allowed_groups": ["team-x"]}  # fmt: skip
        assert admin.post("/api/models", json=body).status_code == 201
    yield server
    server.proc.stop()


def set_claims(provider: Proc, sub: str, **claims: object) -> None:
    resp = httpx.put(f"{provider.url}/users/{sub}", json={**USERS[sub], **claims}, timeout=30)
    assert resp.status_code == 204, resp.text


def signed_in(sso: LisaServer, provider: Proc, sub: str) -> httpx.Client:
    web, done = browser_sign_in(sso, provider, sub)
    assert done.status_code == 303, done.text
    return web


def visible_models(sso: LisaServer, token: str) -> httpx.Response:
    return httpx.get(sso.url + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def model_ids(resp: httpx.Response) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {m["id"] for m in resp.json()["data"]}


def test_accounts_with_the_same_preferred_username_are_different_users(sso: LisaServer, provider: Proc) -> None:
    with closing(signed_in(sso, provider, "sam-1")) as one, closing(signed_in(sso, provider, "sam-2")) as two:
        first = one.post("/api/tokens", json={"name": "sam-1 notebook"})
        second = two.post("/api/tokens", json={"name": "sam-2 notebook"})
        assert first.status_code == 201 and second.status_code == 201, (first.text, second.text)
        first_id, second_id = first.json()["username"], second.json()["username"]
        assert first_id != second_id, "two provider accounts named 'sam' share one identity"
        assert first.json()["display_name"] == second.json()["display_name"] == "sam"
        # Neither sees, reads nor revokes the other's token.
        assert {t["id"] for t in two.get("/api/tokens").json()["data"]} == {second.json()["id"]}
        assert two.get(f"/api/tokens/{first.json()['id']}").status_code == 404
        assert two.delete(f"/api/tokens/{first.json()['id']}").status_code == 404
        assert two.get("/api/tokens", params={"username": first_id}).status_code == 403
        assert visible_models(sso, first.json()["token"]).status_code == 200
        # The identity is the same through every credential: a provider JWT for sam-2 is sam-2, not "sam".
        jwt = provider_tokens(provider, "sam-2")["id_token"]
        me = httpx.get(sso.url + "/api/users/me", headers={"Authorization": f"Bearer {jwt}"}, timeout=30).json()
        assert me["username"] == second_id and me["display_name"] == "sam"
    with sso.client() as admin:
        # A user-scoped limit set for one of them does not reach the other.
        assert admin.put(f"/api/limits/user/{first_id}", json={"rpm": 1000}).status_code == 200
        try:
            buckets = {
                sub: [b["key"] for b in sso.client(t.json()["token"]).get("/api/limits/me").json()["buckets"]]
                for sub, t in (("sam-1", first), ("sam-2", second))
            }
            assert buckets == {"sam-1": [f"user:{first_id}"], "sam-2": []}
        finally:
            admin.delete(f"/api/limits/user/{first_id}")
        sams = admin.get("/api/users", params={"display_name": "sam"}).json()["data"]
        assert {(u["id"], u["subject"], u["issuer"]) for u in sams} == {
            (first_id, "sam-1", provider.url), (second_id, "sam-2", provider.url)
        }  # fmt: skip


def test_a_group_removed_at_the_provider_leaves_the_token_at_the_next_sign_in(sso: LisaServer, provider: Proc) -> None:
    with closing(signed_in(sso, provider, "dana")) as web:
        token = web.post("/api/tokens", json={"name": "dana notebook"}).json()["token"]
    assert TEAM_MODEL in model_ids(visible_models(sso, token))
    earlier_jwt = provider_tokens(provider, "dana")["id_token"]  # issued while dana was still in team-x
    set_claims(provider, "dana", **{"cognito:groups": ["staff", "api-users"]})
    try:
        time.sleep(1.1)  # the provider's "iat" has whole seconds
        signed_in(sso, provider, "dana").close()
        assert TEAM_MODEL not in model_ids(visible_models(sso, token))
        with sso.client(token) as client:
            assert client.get("/api/users/me").json()["groups"] == ["api-users", "staff"]
        # A JWT issued before that sign-in still says team-x: it acts with what it says until it expires, but it
        # cannot give the group back to dana's API tokens (evidence of groups never moves backwards).
        assert TEAM_MODEL in model_ids(visible_models(sso, earlier_jwt))
        assert TEAM_MODEL not in model_ids(visible_models(sso, token))
        # A verified provider JWT re-confirms the groups too: back in team-x, the token (which carries it) has it.
        set_claims(provider, "dana")
        jwt = provider_tokens(provider, "dana")["id_token"]
        assert TEAM_MODEL in model_ids(visible_models(sso, jwt))
        assert TEAM_MODEL in model_ids(visible_models(sso, token))
    finally:
        set_claims(provider, "dana")


def test_groups_not_reconfirmed_within_the_interval_stop_counting(sso: LisaServer, provider: Proc) -> None:
    with closing(signed_in(sso, provider, "erin")) as web:
        token = web.post("/api/tokens", json={"name": "erin notebook"}).json()["token"]
    assert TEAM_MODEL in model_ids(visible_models(sso, token))
    time.sleep(REFRESH_HOURS * 3600 + 1)
    # Not a member of the user group any more, as far as LISA can vouch: refused, and told why.
    stale = visible_models(sso, token)
    assert stale.status_code == 403 and "sign in again" in stale.json()["error"]["message"]
    signed_in(sso, provider, "erin").close()
    assert TEAM_MODEL in model_ids(visible_models(sso, token))


def test_a_token_made_with_a_provider_jwt_does_not_outlive_it(sso: LisaServer, provider: Proc) -> None:
    jwt = provider_tokens(provider, "dana")["id_token"]
    with httpx.Client(base_url=sso.url, headers={"Authorization": f"Bearer {jwt}"}, timeout=30) as api:
        refused = api.post("/api/tokens", json={"name": "long", "expires_in_days": 1})
        assert refused.status_code == 400 and "outlive" in refused.json()["detail"]
        capped = api.post("/api/tokens", json={"name": "default"})
        assert capped.status_code == 201
        expires = datetime.fromisoformat(capped.json()["expires_at"])
        assert expires <= datetime.now(UTC) + timedelta(seconds=JWT_SECONDS + 5)
    # An admin may issue a token for an OIDC user by id; it carries that user's confirmed groups.
    me = httpx.get(sso.url + "/api/users/me", headers={"Authorization": f"Bearer {jwt}"}, timeout=30).json()
    with sso.client() as admin:
        issued = admin.post("/api/tokens", json={"name": "for dana", "username": me["username"]})
        assert issued.status_code == 201 and issued.json()["groups"] == ["api-users", "staff", "team-x"]
        assert TEAM_MODEL in model_ids(visible_models(sso, issued.json()["token"]))
        assert admin.post("/api/tokens", json={"name": "x", "username": "oidc:nobody"}).status_code == 404
