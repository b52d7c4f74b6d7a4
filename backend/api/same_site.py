"""Cross-site request checks for browser sessions (CSRF): where an unsafe request comes from.

A request that a browser may send on its own, with the session cookie attached, must show it comes from this
site: an ``Origin`` (or, without one, a ``Referer``) naming this site, or a custom header (``X-LISA-CSRF`` or
``X-Requested-With``), which a cross-site page cannot add without a CORS preflight that LISA never grants.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CUSTOM_HEADERS = ("x-lisa-csrf", "x-requested-with")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        netloc += f":{port}"
    return parts.scheme, netloc


def cross_site_problem(headers: Headers, site_url: str) -> str | None:
    """Why this unsafe request may not act on a browser session, or None when it comes from this site.

    This site is ``site_url`` (the configured public address) or the request's own Host (any scheme: a proxy in
    front may end TLS).
    """
    if any(headers.get(name) for name in CUSTOM_HEADERS):
        return None
    claimed = headers.get("origin")
    source = "Origin"
    if claimed is None or claimed == "null":
        claimed, source = headers.get("referer"), "Referer"
    if not claimed:
        return (
            "cross-site check failed: a request made with a browser session needs an Origin or Referer header "
            "naming this site, or an X-LISA-CSRF header"
        )
    origin = _origin(claimed)
    site = _origin(site_url)
    host = _origin("http://" + headers.get("host", ""))
    if origin is not None and (origin == site or (host is not None and origin[1] == host[1])):
        return None
    return f"cross-site request refused: its {source} ({claimed[:200]}) is not this site ({site_url})"
