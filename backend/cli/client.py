"""A small synchronous client of LISA's /api for the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx


class ApiError(Exception):
    pass


def resolve_token(token: str | None, data_dir: Path) -> str:
    if token:
        return token
    if os.environ.get("LISA_API_KEY"):
        return os.environ["LISA_API_KEY"]
    path = data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    raise ApiError(f"no API token: pass --token, set LISA_API_KEY, or run next to a data dir with {path.name}")


class LisaClient:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach LISA at {self._http.base_url}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise ApiError(f"{resp.status_code}: {detail}")
        return resp

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._send(method, path, **kwargs)
        return resp.json() if resp.content else None

    def text(self, method: str, path: str, **kwargs: Any) -> str:
        """A plain-text answer (a log tail)."""
        return self._send(method, path, **kwargs).text

    def paged(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.request("GET", path, params={**params, **({"cursor": cursor} if cursor else {})})
            items.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items
