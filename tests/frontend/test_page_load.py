"""The page's one load event (frontend/page_load.py): a loader that fails leaves the others' outputs, and the loaders
of one page load read who is signed in and the configuration once, from the real backend."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import gradio as gr
import httpx
import pytest

from frontend.client import SHARED_READS, BackendClient, Credential
from frontend.page_load import PageLoad
from tests.support import LisaServer


def load_event(page: PageLoad) -> Callable[..., Awaitable[dict[Any, Any]]]:
    with gr.Blocks() as demo:
        status = gr.Markdown()
        page.attach(demo, progress_on=status)
    event = next(f for f in demo.fns.values() if f.name == "load_page")
    assert event.show_progress_on == [status]  # one progress target however many outputs
    return event.fn


async def test_a_failing_loader_shows_its_message_and_leaves_the_others() -> None:
    page = PageLoad()
    with gr.Blocks():
        a, b, c, d, e = (gr.Textbox() for _ in range(5))

    async def two(request: Any) -> tuple[Any, Any]:
        return "first", gr.skip()

    async def fails(request: Any) -> tuple[Any, Any]:
        raise gr.Error("the backend said no")

    async def reads(value: str | None, request: Any) -> str:
        return f"read {value}"

    page.add(two, [], [a, b])
    page.add(fails, [], [c, d])
    page.add(reads, [a], [e])
    with pytest.raises(ValueError, match="same component"):
        page.add(reads, [a], [e])
    with pytest.warns(UserWarning, match="the backend said no"):
        update = await load_event(page)({a: "typed"}, None)
    assert update == {a: "first", e: "read typed"}  # b skipped, c and d left as they were


async def test_the_loaders_of_one_page_load_share_one_read_of_me_and_the_configuration(lisa: LisaServer) -> None:
    asked: list[str] = []

    async def note(request: httpx.Request) -> None:
        asked.append(request.url.path)

    async with httpx.AsyncClient(base_url=lisa.url, event_hooks={"request": [note]}) as http:
        client = BackendClient(http, Credential(token=lisa.token))
        page = PageLoad()
        with gr.Blocks():
            boxes = [gr.Textbox() for _ in range(3)]

        def loader(box: int) -> Callable[[Any], Awaitable[str]]:
            async def load(request: Any) -> str:
                me, config = await client.me(), await client.configuration()
                return f"{box} {me.username} {config.banner.enabled}"

            return load

        for i, box in enumerate(boxes):
            page.add(loader(i), [], [box])
        update = await load_event(page)({}, None)
        assert sorted(update.values()) == [f"{i} admin {update[boxes[0]].split()[-1]}" for i in range(3)]
        assert sorted(asked) == ["/api/configuration", "/api/users/me"]  # once each, for three loaders
        assert SHARED_READS.get() is None  # outside the page load every call reads afresh
        await client.me()
        assert asked.count("/api/users/me") == 2


async def test_two_callers_in_one_page_load_never_share_a_read(lisa: LisaServer) -> None:
    """Defence in depth: a page load acts for one user, but were two callers' loaders ever in one, each reads as itself."""
    other = f"pl-{secrets.token_hex(3)}"
    async with httpx.AsyncClient(base_url=lisa.url) as http:
        made = await http.post(
            "/api/tokens", json={"name": other, "username": other}, headers={"Authorization": f"Bearer {lisa.token}"}
        )
        assert made.status_code == 201, made.text
        clients = [
            BackendClient(http, Credential(token=lisa.token)),
            BackendClient(http, Credential(token=made.json()["token"])),
        ]
        page = PageLoad()
        with gr.Blocks():
            boxes = [gr.Textbox() for _ in clients]

        def loader(client: BackendClient) -> Callable[[Any], Awaitable[str]]:
            async def load(request: Any) -> str:
                return (await client.me()).username

            return load

        for client, box in zip(clients, boxes, strict=True):
            page.add(loader(client), [], [box])
        update = await load_event(page)({}, None)
    assert [update[b] for b in boxes] == ["admin", other]
