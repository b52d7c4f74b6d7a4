"""The small HTML pages of browser sign-in and sign-out: each only shows a form; the form's POST does the work."""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

# No scripts, no outside resources, never framed, never cached, and the code in the address never sent to another
# site. "same-origin", not "no-referrer": under "no-referrer" a browser sends the form's POST with "Origin: null",
# which the cross-site check (backend/api/same_site.py) rightly refuses.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STYLE = "body{font-family:sans-serif;max-width:28rem;margin:4rem auto}input,button{font-size:1rem;padding:.4rem}"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head>'
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def sign_in_page(code: str | None, notice: str | None = None) -> HTMLResponse:
    parts = [f"<p><strong>{escape(notice)}</strong></p>"] if notice else []
    if code:
        parts.append(
            '<form method="post" action="/login">'
            f'<input type="hidden" name="code" value="{escape(code, quote=True)}">'
            "<p>Sign in with the link <code>lisa serve</code> printed (it works once).</p>"
            '<button type="submit">Sign in</button></form>'
        )
    else:
        parts.append(
            '<form method="post" action="/login">'
            '<p><label>API token <input type="password" name="token" autocomplete="off" required></label></p>'
            '<button type="submit">Sign in</button></form>'
            "<p>The admin token of a local install is in <code>DATA_DIR/admin-token</code>.</p>"
        )
    return _page("Sign in to LISA", "".join(parts))


def sign_out_page() -> HTMLResponse:
    body = '<form method="post" action="/logout"><button type="submit">Sign out</button></form>'
    return _page("Sign out of LISA", body)
