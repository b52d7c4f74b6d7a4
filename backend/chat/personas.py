"""Personas, directives and assistants of a chat: what ``ChatTurns.resolve_system_prompt`` and session creation
fill in from the prompt library (backend/prompts) and assistant stacks (backend/assistants).

- A persona is a prompt template (``persona_template_id``) or an assistant's persona, filled with ``variables``, or
  free text (``system_prompt``, sent as written: braces in it are not placeholders); the turn's own choice wins
  over the session's.
- Directives (``directive_template_ids``; an assistant's pinned directive texts, kept in the session's settings as
  ``directives``) are added to the user's message, after the question, in their order.
- Every template is filled with the variables it uses: a variable a template needs and nobody sent is 400 naming it,
  and so is a variable sent that no template uses (a typo would otherwise pass silently).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from backend.assistants.schemas import ResolvedAssistant
from backend.assistants.service import AssistantService
from backend.auth.principal import Principal
from backend.chat.schemas import ChatTurn, SessionCreate
from backend.errors import BadRequest, NotFound
from backend.prompts.placeholders import fill, variables_of
from backend.prompts.service import PromptTemplateService

DIRECTIVE_SEPARATOR = "\n\n"


def _choice(turn: ChatTurn, settings: Mapping[Any, Any], key: str) -> Any:
    value = getattr(turn, key)
    return value if value is not None else settings.get(key)


class Personas:
    def __init__(self, prompts: PromptTemplateService, assistants: AssistantService) -> None:
        self.prompts = prompts
        self.assistants = assistants

    async def resolve(
        self, principal: Principal, settings: Mapping[Any, Any], turn: ChatTurn
    ) -> tuple[str | None, list[str]]:
        """The turn's system prompt and its directive texts. A turn naming neither template costs no query."""
        variables: dict[str, str] = dict(_choice(turn, settings, "variables") or {})
        template_id = turn.persona_template_id
        if template_id is None and turn.system_prompt is None:
            template_id = settings.get("persona_template_id")
        directive_ids: list[str] = list(_choice(turn, settings, "directive_template_ids") or [])
        bodies = [(await self.prompts.get(t, principal)).body for t in [*([template_id] if template_id else []),
                                                                        *directive_ids]]  # fmt: skip
        filled_persona = True  # a template's body or an assistant's persona; free text is sent as written
        if template_id is not None:
            persona: str | None = bodies.pop(0)
        elif turn.system_prompt is not None:
            persona, filled_persona = turn.system_prompt, False
        else:
            persona = settings.get("system_prompt")
            filled_persona = persona is not None and persona == settings.get("assistant_persona")
        texts = [*([persona] if persona is not None and filled_persona else []), *settings.get("directives", ()),
                 *bodies]  # fmt: skip
        used = {name for text in texts for name in variables_of(text)}
        if unknown := sorted(set(variables) - used):
            raise BadRequest(f"unknown variables {', '.join(repr(u) for u in unknown)}: no template uses them",
                             param="variables")  # fmt: skip
        filled = [fill(text, {k: v for k, v in variables.items() if k in variables_of(text)}) for text in texts]
        if persona is not None and filled_persona:
            persona = filled.pop(0)
        return persona, filled

    async def check(self, principal: Principal, settings: Mapping[Any, Any]) -> None:
        """A session's persona and directives as a turn would use them: templates the caller may not see are 404,
        missing or unknown variables 400, when the settings are written rather than at every turn."""
        await self.resolve(principal, settings, ChatTurn(content="-"))

    async def from_assistant(self, principal: Principal, data: SessionCreate) -> tuple[str | None, dict[str, Any]]:
        """The model and settings a session takes from ``data.assistant_id`` (404 for one the caller may not see);
        what ``data`` sets itself overrides them."""
        if data.assistant_id is None:
            return None, {}
        return await self.assistant_defaults(principal, data.assistant_id)

    async def assistant_defaults(self, principal: Principal, assistant_id: str) -> tuple[str | None, dict[str, Any]]:
        """The model and the settings an assistant gives a session (404 for one the caller may not use)."""
        found: ResolvedAssistant = await self.assistants.resolve(assistant_id, principal)
        settings: dict[str, Any] = {"assistant_id": found.id}
        if found.model_args:
            settings["arguments"] = dict(found.model_args)
        if found.persona is not None:
            settings["system_prompt"] = found.persona.text  # its placeholders are filled at each turn
            settings["assistant_persona"] = found.persona.text  # (a system prompt of one's own is sent as written)
        if found.directives:
            settings["directives"] = [d.text for d in found.directives]
        if found.collections:
            settings["rag"] = {
                "repositories": sorted({c.repository_id for c in found.collections}),
                "collections": [c.collection_id for c in found.collections],
            }
        if found.mcp_tools:
            settings["mcp_tools"] = list(found.mcp_tools)
        return found.model_id, settings

    async def switch_assistant(
        self, principal: Principal, model: str | None, settings: Mapping[str, Any], assistant_id: str | None
    ) -> tuple[str | None, dict[str, Any]]:
        """A session's model and settings once it uses ``assistant_id`` instead of its assistant (None: none).

        The new assistant is checked as at creation (404 for one the caller may not use). A setting the session
        has not overridden — absent, or still what the previous assistant gives — takes the new assistant's value
        (or is removed when it gives none, or the assistant is cleared); one the user changed is kept. The
        assistant's own texts (``assistant_persona``, ``directives``) and MCP tools always follow the assistant.
        The model follows a new assistant unless the user chose another one; clearing keeps the model."""
        new_model, new = (None, {}) if assistant_id is None else await self.assistant_defaults(principal, assistant_id)
        old_model: str | None = None
        old: dict[str, Any] = {}
        if (old_id := settings.get("assistant_id")) is not None:
            with contextlib.suppress(NotFound):  # deleted, or no longer the caller's: what it gave is unknown
                old_model, old = await self.assistant_defaults(principal, old_id)
        old["system_prompt"] = settings.get("assistant_persona")  # what it gave then, as the session kept it
        switched = dict(settings)
        for key in (
            "assistant_id",
            "assistant_persona",
            "directives",
            "mcp_tools",
            "arguments",
            "system_prompt",
            "rag",
        ):
            following = key in ("assistant_id", "assistant_persona", "directives", "mcp_tools")
            if following or switched.get(key) is None or switched.get(key) == old.get(key):
                if new.get(key) is None:
                    switched.pop(key, None)
                else:
                    switched[key] = new[key]
        if new_model is not None and (model is None or model == old_model):
            model = new_model
        return model, switched
