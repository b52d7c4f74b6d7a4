"""A session's messages as a tree: which branch is shown, and each message's alternatives (its siblings).

A message's children are ordered oldest first. The active branch is the path from the first message down to the
session's active leaf, continued (when that message has children) by the newest child at each step, so pointing
the session at any message shows a whole conversation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[Any, Any]


class MessageTree:
    def __init__(self, rows: Sequence[Row]) -> None:
        """``rows``: every message of one session, oldest first (created_at, id)."""
        self.by_id: dict[str, Row] = {r["id"]: r for r in rows}
        self.children: dict[str | None, list[str]] = {}
        for r in rows:
            self.children.setdefault(r["parent_id"], []).append(r["id"])

    def siblings(self, message_id: str) -> list[str]:
        return self.children.get(self.by_id[message_id]["parent_id"], [])

    def newest_leaf_under(self, message_id: str | None) -> str | None:
        """The leaf reached from ``message_id`` (None: the roots) by taking the newest child at each step."""
        current = message_id
        while kids := self.children.get(current):
            current = kids[-1]
        return current

    def branch(self, leaf_id: str | None) -> list[Row]:
        """The messages shown for ``leaf_id``: its path from the first message, continued down to a leaf."""
        if leaf_id not in self.by_id:
            leaf_id = self.newest_leaf_under(None)
        if leaf_id is None:
            return []
        leaf_id = self.newest_leaf_under(leaf_id)
        path: list[Row] = []
        current: str | None = leaf_id
        while current is not None:
            row = self.by_id[current]
            path.append(row)
            current = row["parent_id"]
        return path[::-1]


def history(path: Sequence[Row], buffer: int) -> list[dict[str, str]]:
    """The last ``buffer`` messages of ``path`` as chat messages (answers that failed with nothing said are left out;
    a partial answer is kept: it is what the user saw)."""
    messages = [
        {"role": str(r["role"]), "content": str(r["content"])}
        for r in path
        if r["role"] in ("user", "assistant") and (r["content"] or r["status"] != "error")
    ]
    return messages[-buffer:] if buffer else []
