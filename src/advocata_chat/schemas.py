"""Request and response bodies. Field names and shapes follow the seed's REST contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints


def _no_nul(value: object) -> object:
    # PostgreSQL text cannot hold NUL characters; they carry no meaning in a message anyway.
    return value.replace("\x00", "") if isinstance(value, str) else value


Text = Annotated[str, BeforeValidator(_no_nul)]
NonBlank = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1)]


class CreateConversation(BaseModel):
    initial_message: NonBlank | None = Field(
        None, description="First user message; answer it with POST .../reply"
    )
    title: NonBlank | None = None
    template_id: str | None = Field(None, description="See GET /api/v1/chat/templates")
    instructions: NonBlank | None = Field(
        None, description="Extra instruction for this conversation (after the base prompt)"
    )


class SendMessage(BaseModel):
    message_content: NonBlank
    use_rag: bool = True


class Reply(BaseModel):
    use_rag: bool = True


class UpdateConversation(BaseModel):
    title: NonBlank | None = None
    instructions: Text | None = Field(None, description="Set the instruction; empty clears it")
    status: Literal["active", "archived"] | None = Field(
        None, description="Archive or unarchive; also restores a deleted conversation"
    )


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    conversation_id: uuid.UUID
    role: str
    content: str
    token_count: int | None
    referenced_documents: list[str] = []
    citations: list[dict] = []
    status: str = Field(description="complete, interrupted (stopped early) or failed")
    generation: dict = Field(
        default_factory=dict, description="Prompt versions, model and retrieval settings used"
    )
    superseded_at: datetime | None = Field(
        None, description="Set when a regenerated or edited version replaced this message"
    )
    replaces_id: uuid.UUID | None = Field(None, description="The message this one edits")
    created_at: datetime


class ConversationBase(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    title: str | None
    status: str
    total_tokens: int
    messages_count: int
    template_id: str | None = None
    instructions: str | None = None
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime


class ConversationOut(ConversationBase):
    messages: list[MessageOut] = Field(
        default_factory=list, description="Empty when include_messages=false"
    )


class ConversationSummary(ConversationBase):
    last_message_preview: str | None


class ConversationPage(BaseModel):
    items: list[ConversationSummary]
    total: int
    limit: int
    offset: int
    has_more: bool


class Quota(BaseModel):
    limit: int = Field(description="tokens per period; 0 means unlimited")
    used: int
    period_seconds: int


class TokenStats(BaseModel):
    user_id: uuid.UUID
    total_tokens: int
    total_conversations: int
    active_conversations: int
    archived_conversations: int
    deleted_conversations: int
    quota: Quota | None = None


class ErrorBody(BaseModel):
    error: str
    code: str
    detail: object | None = None


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    filename: str
    media_type: str
    size_bytes: int
    sha256: str
    status: str = Field(description="processing, ready or failed")
    error: str | None = Field(None, description="Why indexing failed")
    chunk_count: int
    page_count: int | None
    created_at: datetime
    updated_at: datetime


class DocumentPage(BaseModel):
    items: list[DocumentOut]
    total: int
    limit: int
    offset: int
    has_more: bool


class SearchRequest(BaseModel):
    query: NonBlank = Field(max_length=2000)
    top_k: int = Field(5, ge=1, le=50)


class SearchResult(BaseModel):
    chunk_id: str
    document_id: uuid.UUID
    title: str
    content: str
    score: float = Field(description="fused reciprocal-rank score")
    similarity: float | None = Field(description="cosine similarity, if vector search found it")
    bm25: float | None = Field(description="full-text BM25 score, if text search found it")
    found_by: Literal["vector", "text", "both"]
    start: int = Field(description="start of the chunk in the document's extracted text")
    end: int
    page: int | None


class SearchResponse(BaseModel):
    query: str
    results: list[SearchResult]


class TemplateOut(BaseModel):
    id: str
    title: str
    description: str
    system_addition: str
    suggested_questions: list[str]
    facts_to_collect: list[str]


class Regenerate(BaseModel):
    use_rag: bool = True


class EditMessage(BaseModel):
    content: NonBlank
    use_rag: bool = True


class FeedbackIn(BaseModel):
    rating: Literal["up", "down"]
    comment: Text | None = Field(None, max_length=2000)


class FeedbackOut(BaseModel):
    message_id: uuid.UUID
    rating: Literal["up", "down"]
    comment: str | None
    created_at: datetime
    updated_at: datetime


class FeedbackGroup(BaseModel):
    answer_prompt: str | None = Field(description="sha256 prefix of the answer/chat prompt")
    model: str | None
    up: int
    down: int


class FeedbackSummary(BaseModel):
    scope: Literal["mine", "all"]
    up: int
    down: int
    by_prompt_version: list[FeedbackGroup]


class ShareIn(BaseModel):
    user_id: uuid.UUID


class ShareOut(BaseModel):
    conversation_id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime


class PromptOut(BaseModel):
    name: str
    sha256: str | None = Field(description="Version in use (file and its includes); null if none")
    description: str
    variables: list[str]
    loaded_at: datetime | None = Field(description="When the version in use was loaded")
    error: str | None = Field(
        description="Why the file on disk is not in use (YAML error, wrong variables); "
        "the last good version answers meanwhile"
    )


class PromptList(BaseModel):
    live_reload: bool = Field(description="Edits take effect on the next message (development)")
    model: str = Field(
        description="The chat model that answers: its name, or offline-extractive when none is set"
    )
    prompts: list[PromptOut]
