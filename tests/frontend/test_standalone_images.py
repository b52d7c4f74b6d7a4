"""The app on its own serves the chat's image links (``/api/sessions/{id}/images/{id}``) from the backend, as the
signed-in user only."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.chat.context_helpers import registered_model
from tests.frontend.conftest import User, new_user
from tests.support import LisaServer, Proc, free_port, start_process


@pytest.fixture(scope="module")
def standalone(lisa: LisaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    port = free_port()
    argv = [sys.executable, "-m", "frontend", "--backend", lisa.url, "--port", str(port)]
    log = Path(tmp_path_factory.mktemp("standalone-images")) / "app.log"
    proc = start_process(argv, port=port, log=log, deadline=90)
    yield proc
    proc.stop(signal.SIGTERM)


def signed_in(standalone: Proc, user: User) -> dict[str, str]:
    resp = httpx.post(standalone.url + "/login", data={"token": user.token})
    assert resp.status_code == 303, resp.text
    return {"lisa_session": resp.cookies["lisa_session"]}


def test_image_links_work_on_the_apps_address_for_the_owner_only(
    standalone: Proc, admin: httpx.Client, lisa: LisaServer, user: User, image_server: Proc
) -> None:
    with registered_model(admin, "ui-sa-painter", type="imagegen", hosting="internal",
                          base_url=image_server.url + "/v1") as painter:  # fmt: skip
        session = user.api.post("/api/sessions", json={"title": "pictures"}).json()["id"]
        made = user.api.post(f"/api/sessions/{session}/images", json={"model": painter, "prompt": "a boat"})
        assert made.status_code == 201, made.text
        url = made.json()["images"][0]["url"]
    original = user.api.get(url)
    through = httpx.get(standalone.url + url, cookies=signed_in(standalone, user))
    assert through.status_code == 200 and through.content == original.content
    assert through.headers["content-type"] == "image/png" and through.headers["x-content-type-options"] == "nosniff"
    other = new_user(admin, lisa, "ui-sa-other")
    try:
        refused = httpx.get(standalone.url + url, cookies=signed_in(standalone, other))
        assert refused.status_code == 404 and "detail" in refused.json()
    finally:
        other.api.close()
    assert httpx.get(standalone.url + url).status_code == 401
    bad = httpx.get(standalone.url + f"/api/sessions/{session}/images/x%20y", cookies=signed_in(standalone, user))
    assert bad.status_code == 404
