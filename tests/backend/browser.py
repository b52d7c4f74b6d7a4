"""A browser's view of LISA for the tests: a cookie jar, no redirects followed, and the headers a same-site page
sends (a browser puts its page's Origin on every POST)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support import LisaServer


def browser(lisa: LisaServer, origin: str | None = None) -> httpx.Client:
    headers = {"Origin": origin or lisa.url}
    return httpx.Client(base_url=lisa.url, timeout=30, follow_redirects=False, headers=headers)


def sign_in(web: httpx.Client, token: str) -> httpx.Response:
    """POST /login with an API token in the form body, as the sign-in page's form does."""
    return web.post("/login", data={"token": token})


@contextmanager
def signed_in(lisa: LisaServer, token: str | None = None) -> Iterator[httpx.Client]:
    """A browser signed in with ``token`` (default: the admin's)."""
    with browser(lisa) as web:
        resp = sign_in(web, token or lisa.token)
        assert resp.status_code == 303, resp.text
        assert web.cookies.get("lisa_session")
        yield web
