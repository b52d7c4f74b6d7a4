"""OIDC bearer-token verification against a real HTTP discovery document and JWKS, with tokens we sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from backend.auth.oidc import OIDCVerifier, claim_at, groups_from
from backend.auth.users import oidc_user_id
from backend.errors import Unauthorized


class Provider:
    """Serves /.well-known/openid-configuration and a JWKS that tests can rotate."""

    def __init__(self) -> None:
        self.keys: list[Any] = [RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig"})]
        self.jwks_hits = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: Any
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": provider.issuer + "/jwks"}
                elif self.path == "/jwks":
                    provider.jwks_hits += 1
                    body = KeySet(provider.keys).as_dict(private=False)
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, key: RSAKey | None = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        body = {"iss": self.issuer, "aud": "lisa-client", "exp": now + 300, "iat": now, "sub": "u-1", **claims}
        return jwt.encode({"alg": "RS256", "kid": key.kid, **(header or {})}, body, key)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.server.shutdown()


@pytest.fixture
def verifier(provider: Provider) -> OIDCVerifier:
    return OIDCVerifier(
        provider.issuer, "lisa-client", "cognito:groups", ["username", "preferred_username", "sub"],
        min_refresh_seconds=0, leeway_seconds=0,
    )  # fmt: skip


async def test_valid_token_gives_identity(provider: Provider, verifier: OIDCVerifier) -> None:
    groups: dict[str, Any] = {"cognito:groups": ["staff", "admin"]}
    token = provider.sign(preferred_username="alice", **groups)
    identity = await verifier.verify(token)
    assert identity.display_name == "alice" and identity.groups == ("staff", "admin")
    # Keyed on issuer + sub, never on the editable name.
    assert identity.subject == "u-1" and identity.username == oidc_user_id(provider.issuer, "u-1")
    assert identity.username.startswith("oidc:") and "alice" not in identity.username
    bare = await verifier.verify(provider.sign())
    assert bare.display_name == "u-1" and bare.groups == ()  # falls back to sub; no groups claim
    assert bare.username == identity.username  # the same person, whatever name they set


async def test_token_without_sub_names_nobody(provider: Provider, verifier: OIDCVerifier) -> None:
    key = provider.keys[0]
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": "lisa-client", "exp": now + 300, "preferred_username": "alice"}
    with pytest.raises(Unauthorized, match="sub"):
        await verifier.verify(jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key))


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"iss": "http://evil.example"}, "iss"),
        ({"aud": "someone-else"}, "aud"),
        ({"exp": -5}, "exp"),  # times: seconds from when the test runs (not from collection, minutes earlier)
        ({"nbf": 600}, "not yet valid"),
    ],
)
async def test_wrong_claims_are_401(provider: Provider, verifier: OIDCVerifier, claims: dict, fragment: str) -> None:
    now = int(time.time())
    claims = {k: now + v if k in ("exp", "nbf") else v for k, v in claims.items()}
    with pytest.raises(Unauthorized) as err:
        await verifier.verify(provider.sign(**claims))
    assert fragment in err.value.message


async def test_missing_exp_is_401(provider: Provider, verifier: OIDCVerifier) -> None:
    key = provider.keys[0]
    token = jwt.encode(
        {"alg": "RS256", "kid": key.kid}, {"iss": provider.issuer, "aud": "lisa-client", "sub": "x"}, key
    )
    with pytest.raises(Unauthorized, match="exp"):
        await verifier.verify(token)


async def test_unknown_kid_refetches_once_then_401(provider: Provider, verifier: OIDCVerifier) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
    await verifier.verify(provider.sign())
    hits = provider.jwks_hits
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier.verify(provider.sign(key=stranger))
    assert provider.jwks_hits == hits + 1


async def test_key_rotation_is_followed(provider: Provider, verifier: OIDCVerifier) -> None:
    await verifier.verify(provider.sign())  # keys cached
    rotated = RSAKey.generate_key(2048, parameters={"kid": "key-2", "use": "sig"})
    provider.keys = [rotated]
    identity = await verifier.verify(provider.sign(key=rotated, username="bob"))
    assert identity.display_name == "bob"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_alg_none_hs256_confusion_and_tampering_are_401(provider: Provider, verifier: OIDCVerifier) -> None:
    claims = {"iss": provider.issuer, "aud": "lisa-client", "exp": int(time.time()) + 300, "sub": "mallory"}
    with pytest.raises(Unauthorized, match="none"):
        await verifier.verify(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.")
    # HS256 keyed with the public key's bytes: the classic algorithm-confusion forgery.
    public_pem = provider.keys[0].as_pem(private=False)
    signing_input = f"{_b64({'alg': 'HS256', 'kid': provider.keys[0].kid})}.{_b64(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(Unauthorized, match="HS256"):
        await verifier.verify(forged)
    header, _payload, signature = provider.sign().split(".")
    tampered_payload = _b64({**claims, "sub": "admin"})
    with pytest.raises(Unauthorized, match="invalid token"):
        await verifier.verify(f"{header}.{tampered_payload}.{signature}")
    with pytest.raises(Unauthorized, match="malformed"):
        await verifier.verify("ey.not-a-token.at-all")


def test_claim_paths_and_group_shapes() -> None:
    claims = {"cognito:groups": ["a"], "realm_access": {"roles": ["r1", "r2"]}, "scp": "x y,z"}
    assert claim_at(claims, "cognito:groups") == ["a"]
    assert claim_at(claims, "realm_access.roles") == ["r1", "r2"]
    assert claim_at(claims, "realm_access.missing") is None
    assert groups_from(claims["scp"]) == ("x", "y", "z")
    assert groups_from(None) == () and groups_from(42) == ()
