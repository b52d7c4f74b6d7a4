"""Everything the page reads when it opens, as ONE Gradio event.

Each tab used to register its own ``demo.load``: about twenty events per page view, each a request to Gradio's
queue, a pass through the backend's request guard, its own messages on the event stream and its own re-render in the
browser. Under load (the backend and a local model sharing two cores) those queued one behind the other and the page
took seconds to fill in. Now the tabs add their loaders here (``PageLoad.add``) and the app attaches one event that
runs them all concurrently and sends every output in one update.

A loader that fails does not hold back the others: its outputs are left as they are and its message shows as a
warning toast (a backend refusal in the backend's own words, anything else as a generic line, logged in full).
What must run once the page has loaded (a second step reading what the first put in the page) is chained with
``then``: it receives the combined event's dependency.

One progress target: Gradio 6's page keeps a loading status for every component that was ever the progress target of
an event (all its outputs, unless ``show_progress_on`` names fewer), and on every status change of any event it
updates all of them, each found by a walk of the page's component tree (~440 nodes here). With the page load's ~70
outputs among them, that was most of the app's cost per chat turn. So this event, and the chat's events with many
outputs, name one progress target.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from gradio.components import Component

from frontend.client import SHARED_READS

log = logging.getLogger("lisa.ui")
Loader = Callable[..., Awaitable[Any]]  # (*input values, request) -> one value per output (a tuple when several)


@dataclass
class Part:
    fn: Loader
    inputs: list[Component]
    outputs: list[Component]


@dataclass
class PageLoad:
    parts: list[Part] = field(default_factory=list)
    chains: list[Callable[[Any], Any]] = field(default_factory=list)

    def add(self, fn: Loader, inputs: Sequence[Component] = (), outputs: Sequence[Component] = ()) -> None:
        taken = {id(c) for part in self.parts for c in part.outputs}
        if clash := [c for c in outputs if id(c) in taken]:
            raise ValueError(f"two page loaders write the same component: {clash}")
        self.parts.append(Part(fn, list(inputs), list(outputs)))

    def then(self, chain: Callable[[Any], Any]) -> None:
        """``chain(dependency)`` attaches events to run after the page's load event."""
        self.chains.append(chain)

    def attach(self, demo: gr.Blocks, progress_on: Component) -> None:
        """``progress_on``: the one component that carries the event's (hidden) loading status (module docstring)."""
        inputs = list({id(c): c for part in self.parts for c in part.inputs}.values())
        outputs = [c for part in self.parts for c in part.outputs]
        parts = self.parts

        async def load_page(values: dict[Component, Any], request: gr.Request) -> dict[Component, Any]:
            reads = SHARED_READS.set({})  # who is signed in and the configuration: read once for all loaders
            try:
                results = await asyncio.gather(
                    *(part.fn(*(values.get(c) for c in part.inputs), request) for part in parts),
                    return_exceptions=True,
                )
            finally:
                SHARED_READS.reset(reads)
            update: dict[Component, Any] = {}
            problems: list[str] = []
            for part, result in zip(parts, results, strict=True):
                if isinstance(result, BaseException):
                    problems.append(message(result))
                    continue
                if is_skip(result) or len(part.outputs) == 1:  # one gr.skip() leaves every output as it is
                    result = (result,) * len(part.outputs)
                for component, value in zip(part.outputs, result, strict=True):
                    if not is_skip(value):
                        update[component] = value
            for text in dict.fromkeys(problems):  # each message once
                gr.Warning(text)
            return update

        # A set of inputs: the handler gets one dict, whatever each loader reads. No progress overlay: the page
        # fills in as one update.
        dependency = demo.load(load_page, set(inputs), outputs, show_progress="hidden", show_progress_on=progress_on)
        for chain in self.chains:
            chain(dependency)


def is_skip(value: Any) -> bool:
    return isinstance(value, dict) and value == {"__type__": "update"}


def message(exc: BaseException) -> str:
    if isinstance(exc, gr.Error):
        return str(exc.message)
    log.error("a page loader failed", exc_info=exc)
    return "Part of the page could not be read; the server log has the details."
