"""The feature toggles: names, defaults, what each one switches, and who a toggle does not bind.

Admins are exempt from every toggle: a toggle limits what users may do, and an admin could turn it back on anyway,
so refusing them would protect nothing. RAG admins are also exempt from the toggles of the document library and of
uploads into repositories, which they manage. Everyone else is refused with 403 naming the toggle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from backend.auth.principal import Principal


class Feature(StrEnum):
    delete_session_history = "delete_session_history"
    view_meta_data = "view_meta_data"
    edit_kwargs = "edit_kwargs"
    edit_prompt_template = "edit_prompt_template"
    edit_chat_history_buffer = "edit_chat_history_buffer"
    edit_num_of_rag_document = "edit_num_of_rag_document"
    upload_rag_docs = "upload_rag_docs"
    rag_selection_available = "rag_selection_available"
    upload_context_docs = "upload_context_docs"
    document_summarization = "document_summarization"
    show_rag_library = "show_rag_library"
    show_prompt_template_library = "show_prompt_template_library"
    mcp_connections = "mcp_connections"
    model_library = "model_library"
    enable_user_api_tokens = "enable_user_api_tokens"


@dataclass(frozen=True, slots=True)
class FeatureInfo:
    default: bool
    description: str
    rag_admins_exempt: bool = False


FEATURES: dict[Feature, FeatureInfo] = {
    Feature.delete_session_history: FeatureInfo(True, "Users may delete their chat sessions."),
    Feature.view_meta_data: FeatureInfo(True, "Users see the metadata of chat messages (model, arguments, tokens)."),
    Feature.edit_kwargs: FeatureInfo(True, "Users may set model arguments (max tokens, temperature, ...) in a chat."),
    Feature.edit_prompt_template: FeatureInfo(True, "Users may edit the persona and directives of a chat."),
    Feature.edit_chat_history_buffer: FeatureInfo(True, "Users may set how many past messages a chat sends."),
    Feature.edit_num_of_rag_document: FeatureInfo(True, "Users may set how many RAG passages a chat retrieves."),
    Feature.upload_rag_docs: FeatureInfo(True, "Users may upload documents into RAG repositories.", True),
    Feature.rag_selection_available: FeatureInfo(True, "Users may choose RAG repositories and collections in a chat."),
    Feature.upload_context_docs: FeatureInfo(True, "Users may put uploaded documents into a chat's context."),
    Feature.document_summarization: FeatureInfo(True, "Users may have an uploaded document summarised."),
    Feature.show_rag_library: FeatureInfo(True, "Users may browse the documents of RAG collections.", True),
    Feature.show_prompt_template_library: FeatureInfo(True, "Users may browse the prompt template library."),
    # Off by default: a personal MCP server is an address the backend connects to on a user's behalf.
    Feature.mcp_connections: FeatureInfo(False, "Users may add their own MCP servers."),
    Feature.model_library: FeatureInfo(True, "Users may browse the model library (/api/models)."),
    Feature.enable_user_api_tokens: FeatureInfo(True, "Users may create their own API tokens."),
}


def exempt(feature: Feature, principal: Principal) -> bool:
    """Whether this toggle does not bind this caller (see the module's docstring)."""
    return principal.is_admin or (principal.is_rag_admin and FEATURES[feature].rag_admins_exempt)
