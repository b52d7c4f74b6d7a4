"""Export a session as JSON (every branch and every setting, importable) or Markdown (the active branch, for
people); import a JSON export as a new session of the caller.

The export (backend/chat/transfer_schemas.py) carries the session's settings — model, persona and directives
(free text, templates and variables, an assistant's pinned texts), model arguments, history buffer, RAG selection,
MCP tools, the assistant it came from — every message of every branch (compaction summaries among them) and the
documents in its context (their text and summaries).

An import is validated whole before anything is written: the format and every field (422), then what the importer
may use — the model, the prompt templates, the assistant, the RAG repositories and the MCP servers it names must be
visible to them (404 naming the field), the feature toggles that guard the settings must allow them (403, as when
creating a session), and the documents must fit the server's caps (400 / 413). Then one transaction writes it all:
bad input answers 4xx with nothing written. Imported messages get new ids (an export imported twice makes two
sessions), and a compaction summary's ``covers`` follow them; text, metadata, statuses and times are kept. The
body is bounded by the /api JSON cap (``LISA_MAX_JSON_BYTES``), the message count by ``MAX_MESSAGES``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from backend.auth.principal import Principal, can_access
from backend.chat import tokens
from backend.chat.context_docs import ContextDocuments, check_type, new_document_id
from backend.chat.features import check_settings
from backend.chat.schemas import MessageStatus, Role, SessionCreate
from backend.chat.sessions import ChatSessions, settings_values
from backend.chat.store import new_id
from backend.chat.transfer_schemas import FORMAT, VERSION, ExportedMessage, ExportedSession, SessionExport
from backend.chat.tree import MessageTree
from backend.configuration.features import Feature
from backend.configuration.service import ConfigurationService
from backend.db.tables import mcp_servers as MCP_SERVERS
from backend.errors import BadRequest, NotFound, PayloadTooLarge
from backend.mcp.store import McpServerStore, usable_filter

__all__ = ["SessionExport", "SessionImporter", "export_json", "export_markdown"]
ASSISTANT_SETTINGS = ("assistant_id", "assistant_persona", "directives", "mcp_tools")  # kept as the session has them
DOCUMENT_FIELDS = ("name", "text", "size_bytes", "sha256", "summary", "summary_model", "summarized_at", "created_at")


def export_json(
    row: Mapping[Any, Any], messages: Sequence[Mapping[Any, Any]], documents: Sequence[Mapping[Any, Any]] = ()
) -> SessionExport:
    settings = row["settings"]
    return SessionExport.model_validate(
        {
            "format": FORMAT,
            "version": VERSION,
            "exported_at": datetime.now(UTC),
            "session": {k: v for k, v in {**row, **settings}.items() if k in ExportedSession.model_fields},
            "messages": [{k: m[k] for k in ExportedMessage.model_fields} for m in messages],
            "context_documents": [{k: d[k] for k in DOCUMENT_FIELDS} for d in documents],
        }
    )


def export_markdown(row: Mapping[Any, Any], messages: Sequence[Mapping[Any, Any]]) -> str:
    """The active branch as Markdown: a heading per message, its text as written."""
    tree = MessageTree(messages)
    lines = [f"# {row['title']}", ""]
    if row["model"]:
        lines.append(f"- Model: {row['model']}")
    lines += [f"- Created: {row['created_at'].isoformat()}", f"- Exported: {datetime.now(UTC).isoformat()}", ""]
    if system_prompt := row["settings"].get("system_prompt"):
        lines += ["## System", "", system_prompt, ""]
    for message in tree.branch(row["active_leaf_id"]):
        heading = str(message["role"]).capitalize()
        meta = message["metadata"] or {}
        notes = [str(meta["model"])] if message["role"] == "assistant" and meta.get("model") else []
        if message["status"] != MessageStatus.complete.value:
            notes.append(str(message["status"]))
        lines += [f"## {heading}" + (f" ({', '.join(notes)})" if notes else ""), "", str(message["content"]), ""]
        if message["error"]:
            lines += [f"> Error: {message['error']}", ""]
        for source in meta.get("sources") or []:
            if isinstance(source, dict):
                lines.append(f"- [{source.get('index', '')}] {source.get('name', '')} ({source.get('source', '')})")
        if meta.get("sources"):
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _usage_of(message: ExportedMessage) -> tuple[int, int]:
    usage = message.metadata.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) and prompt >= 0 else 0,
        completion if isinstance(completion, int) and completion >= 0 else 0,
    )


def _metadata(metadata: dict[str, Any], ids: Mapping[str, str]) -> dict[str, Any]:
    """A message's metadata with the message ids it names (a summary's ``covers``) changed to the new ones."""
    if isinstance(metadata.get("covers"), list):
        metadata = {**metadata, "covers": [ids[c] for c in metadata["covers"] if isinstance(c, str) and c in ids]}
    compaction = metadata.get("compaction")
    if isinstance(compaction, dict) and compaction.get("summary_id") in ids:
        metadata = {**metadata, "compaction": {**compaction, "summary_id": ids[compaction["summary_id"]]}}
    return metadata


class SessionImporter:
    """Checks an export against what the importer may use, then writes it as their new session."""

    def __init__(
        self,
        sessions: ChatSessions,
        configuration: ConfigurationService,
        mcp_servers: McpServerStore,
        documents: ContextDocuments,
    ) -> None:
        self.sessions = sessions
        self.configuration = configuration
        self.mcp_servers = mcp_servers
        self.documents = documents

    async def run(self, owner: Principal, data: SessionExport, project_id: str | None) -> str:
        """Writes ``data`` as a new session of ``owner`` (all or nothing); its id."""
        settings = await self._checked_settings(owner, data.session)
        counts = await self._checked_documents(owner, data)
        ids = {m.id: new_id("msg") for m in data.messages}
        rows = [
            {
                "id": ids[m.id],
                "parent_id": ids[m.parent_id] if m.parent_id is not None else None,
                "role": m.role.value,
                "content": m.content,
                "metadata": _metadata(m.metadata, ids),
                "status": m.status.value,
                "error": m.error,
                "created_at": m.created_at,
                "updated_at": m.updated_at or m.created_at,
            }
            for m in data.messages
        ]
        documents = [
            {
                **d.model_dump(include=set(DOCUMENT_FIELDS)),
                "id": new_document_id(),
                "owner": owner.username,
                "chars": len(d.text),
                "tokens": count,
            }
            for d, count in zip(data.context_documents, counts, strict=True)
        ]
        spent = [_usage_of(m) for m in data.messages if m.role == Role.assistant]
        session = data.session
        values = {
            "title": session.title,
            "project_id": project_id,
            "model": session.model,
            "settings": settings,
            "active_leaf_id": ids[session.active_leaf_id] if session.active_leaf_id else None,
            "prompt_tokens": sum(p for p, _ in spent),
            "completion_tokens": sum(c for _, c in spent),
            "context_documents": len(documents),
            "created_at": session.created_at,
            "updated_at": datetime.now(UTC),
        }
        return await self.sessions.store.import_session(owner.username, values, rows, documents)

    async def _checked_settings(self, owner: Principal, session: ExportedSession) -> dict[str, Any]:
        """The session's settings, once the importer may use everything they name."""
        settings = settings_values(session)
        if session.assistant_id is None and (session.assistant_persona is not None or session.directives):
            raise BadRequest("session.assistant_persona and session.directives come from an assistant: "
                             "they need session.assistant_id", param="session.directives")  # fmt: skip
        for key in ASSISTANT_SETTINGS:
            if (value := getattr(session, key)) is not None:
                settings[key] = value
        from_assistant: dict[str, Any] = {}
        if session.assistant_id is not None:
            resolved = await self.sessions.personas.from_assistant(
                owner, SessionCreate(assistant_id=session.assistant_id)
            )  # 404 for an assistant the importer may not use
            from_assistant = {"model": resolved[0], **resolved[1]}
        # The toggles guard what a user sets: a setting as the assistant gives it is not the user's own.
        own = {
            k: getattr(session, k)
            for k in ("system_prompt", "arguments", "history_buffer", "rag")
            if getattr(session, k) is not None and settings.get(k) != from_assistant.get(k)
        }
        await check_settings(self.configuration, owner, SessionCreate(**own))
        if session.model is not None:
            route = (await self.sessions.routes.snapshot()).get(session.model)
            if route is None or not can_access(owner, route.allowed_groups):
                raise NotFound(f"session.model: model '{session.model}' not found")
        for repository_id in session.rag.repositories if session.rag else ():
            try:
                await self.sessions.repositories.get(repository_id, owner)
            except NotFound:
                raise NotFound(f"session.rag: repository '{repository_id}' not found") from None
        if session.mcp_tools:
            servers = {t.partition("/")[0] for t in session.mcp_tools}
            usable = {
                r["id"] for r in await self.mcp_servers.rows(usable_filter(owner) & MCP_SERVERS.c.id.in_(servers))
            }
            if missing := sorted(servers - usable):
                raise NotFound(f"session.mcp_tools: MCP server '{missing[0]}' not found")
        await self.sessions.personas.check(owner, settings)  # templates (404) and their variables (400)
        return settings

    async def _checked_documents(self, owner: Principal, data: SessionExport) -> list[int]:
        """The documents' token counts, once they fit the caps (and ``upload_context_docs`` allows them)."""
        documents = data.context_documents
        if not documents:
            return []
        await self.configuration.require(Feature.upload_context_docs, owner)
        caps = self.documents
        if len(documents) > caps.max_documents:
            raise BadRequest(f"a session holds at most {caps.max_documents} documents; the export has "
                             f"{len(documents)}", param="context_documents")  # fmt: skip
        for document in documents:
            check_type(document.name)
            if len(document.text) > caps.max_chars:
                raise PayloadTooLarge(f"{document.name}: {len(document.text):,} characters of text, over the limit "
                                      f"of {caps.max_chars:,} for a document in context")  # fmt: skip
        return list(await asyncio.gather(*(tokens.count_async(d.text) for d in documents)))
