"""The feature toggles of a chat turn's or a session's fields (docs/configuration.md): a field a toggle keeps from
the caller is refused, 403 naming the toggle; admins are exempt (``ConfigurationService.require``). Templates by id
stay allowed when ``edit_prompt_template`` is off: it guards a free-text persona of one's own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backend.auth.principal import Principal
from backend.chat.schemas import ChatTurn, SessionCreate, SessionUpdate
from backend.configuration.features import Feature
from backend.configuration.service import ConfigurationService

# of a message's metadata, what a caller without view_meta_data still sees: structure (a compaction summary)
META_DATA_KEPT = ("kind", "covers")


async def check_settings(
    configuration: ConfigurationService, principal: Principal, body: ChatTurn | SessionCreate | SessionUpdate
) -> None:
    """``body``: a ChatTurn, SessionCreate or SessionUpdate; only fields it sets (to a value) are checked."""
    sent = {k for k in body.model_fields_set if getattr(body, k, None) is not None}
    wanted: list[Feature] = []
    if "arguments" in sent:
        wanted.append(Feature.edit_kwargs)
    if "history_buffer" in sent:
        wanted.append(Feature.edit_chat_history_buffer)
    if "system_prompt" in sent:
        wanted.append(Feature.edit_prompt_template)
    if "rag" in sent:
        wanted.append(Feature.rag_selection_available)
        if body.rag is not None and "top_k" in body.rag.model_fields_set:
            wanted.append(Feature.edit_num_of_rag_document)
    for feature in wanted:
        await configuration.require(feature, principal)


async def shows_metadata(configuration: ConfigurationService, principal: Principal) -> bool:
    return await configuration.enabled(Feature.view_meta_data, principal)


def without_metadata(messages: Sequence[Mapping[Any, Any]]) -> list[dict[str, Any]]:
    """Messages with their metadata emptied (``view_meta_data`` off)."""
    return [{**m, "metadata": {k: v for k, v in (m.get("metadata") or {}).items() if k in META_DATA_KEPT}}
            for m in messages]  # fmt: skip
