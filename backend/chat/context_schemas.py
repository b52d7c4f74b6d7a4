"""Schemas of what joins a session besides its messages: documents in context, their summaries, generated images."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.paging import Page
from backend.text import Text

ModelId = Annotated[Text, Field(min_length=1, max_length=128)]
IMAGE_PROMPT_MAX = 4_000  # characters (OpenAI's limit for dall-e-3)


class ContextDocumentPublic(BaseModel):
    """A document in a session's context: its extracted text joins the prompt of each turn (cut to fit)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    session_id: str
    name: str
    size_bytes: int = Field(description="Size of the uploaded file.")
    chars: int = Field(description="Characters of text extracted from it.")
    tokens: int = Field(description="Tokens the text takes in a prompt (counted high; see docs/chat-context.md).")
    summary: str | None = Field(description="The latest summary (POST .../summary), if any.")
    summary_model: str | None
    summarized_at: datetime | None
    created_at: datetime


class ContextDocumentPage(Page[ContextDocumentPublic]):
    pass


class ContextDocumentList(BaseModel):
    data: list[ContextDocumentPublic]


class ContextNotice(BaseModel):
    """What documents in context lost to fit the model's context window: shown to the user, kept on the answer."""

    document_id: str
    name: str
    kept_tokens: int
    total_tokens: int
    omitted: bool = Field(description="True when none of the document fitted.")
    message: str


class SummaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelId = Field(description="A textgen model with the 'summarization' feature.")
    max_tokens: int | None = Field(
        default=None, ge=16, le=32_768, description="Length of the summary at most (and of each partial one)."
    )


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelId = Field(description="An imagegen model.")
    prompt: Text = Field(min_length=1, max_length=IMAGE_PROMPT_MAX)
    n: int = Field(default=1, ge=1, le=4)
    size: Literal["256x256", "512x512", "1024x1024", "1024x1792", "1792x1024", "1536x1024", "1024x1536"] | None = None


class ImagePublic(BaseModel):
    """A generated image's metadata; its bytes are at ``url`` (never inlined in lists)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    session_id: str
    message_id: str | None
    model: str
    prompt: str
    revised_prompt: str | None
    mime: str
    size_bytes: int
    url: str = Field(description="GET it (signed in as the session's owner) for the image bytes.")
    created_at: datetime


class ImagePage(Page[ImagePublic]):
    pass


class ImageGeneration(BaseModel):
    """What POST /api/sessions/{id}/images made: the question and answer messages and the images."""

    user_message_id: str
    assistant_message_id: str
    images: list[ImagePublic]


class CompactionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelId | None = Field(
        default=None, description="The chat's model (its context window); default: the session's."
    )
    force: bool = Field(
        default=False, description="Compact down to the target share of the window even below the threshold."
    )


class CompactionResult(BaseModel):
    compacted: bool = Field(description="Whether a summary was made now.")
    message_id: str | None = Field(description="The new summary message (role system, metadata.kind 'summary').")
    covers: list[str] = Field(description="Ids of the messages the new summary stands for.")
    summary: str | None = Field(description="The summary the next prompt starts with (new or earlier), if any.")
    prompt_tokens: int | None = Field(description="The branch's prompt after compaction, counted (when counted).")
    notice: str | None = Field(description="Why the older turns could not be summarised, when they could not.")


class ContextPreview(BaseModel):
    """What the session's documents add to the next prompt for a model: the text, and what had to be cut."""

    model: str
    context_window: int = Field(description="The model's context window (tokens), or the default when unknown.")
    budget_tokens: int = Field(description="The share of the window documents may take.")
    documents_tokens: int = Field(description="Tokens the text below takes.")
    text: str = Field(description="What joins the question (empty when the session has no documents).")
    notices: list[ContextNotice]
