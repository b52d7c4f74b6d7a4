"""The app's layout as Gradio sends it to the browser (no browser needed)."""

from __future__ import annotations

from typing import Any

import httpx

from frontend.app import build_app
from frontend.backend import Backend


def test_only_tabs_sit_in_the_tab_bar() -> None:
    """A block between two tabs (a gr.State made in the gr.Tabs context, outside any tab) shifts Gradio 6.31's tab
    order: the tab after it was then listed twice once opened (the Prompt Library's button showed twice)."""
    demo = build_app(Backend(httpx.AsyncClient()))
    config = demo.get_config_file()
    kinds = {c["id"]: c["type"] for c in config["components"]}
    tab_bars: list[list[str]] = []

    def walk(node: dict[str, Any]) -> None:
        if kinds.get(node["id"]) == "tabs":
            tab_bars.append([kinds.get(child["id"], "?") for child in node.get("children", [])])
        for child in node.get("children", []):
            walk(child)

    layout: Any = config["layout"]
    walk(layout)
    assert tab_bars, "the app has no tab bar"
    for children in tab_bars:
        assert len(children) >= 2 and set(children) == {"tabitem"}, children
