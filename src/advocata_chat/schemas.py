"""Request and response bodies. Field names and shapes follow the seed's REST contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class CreateConversation(BaseModel):
    initial_message: NonBlank | None = Field(
        None, description="First user message; answer it with POST .../reply"
    )
    title: NonBlank | None = None


class SendMessage(BaseModel):
    message_content: NonBlank
    use_rag: bool = True


class Reply(BaseModel):
    use_rag: bool = True


class UpdateConversation(BaseModel):
    title: NonBlank | None = None
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
    created_at: datetime


class ConversationBase(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    title: str | None
    status: str
    total_tokens: int
    messages_count: int
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


class TokenStats(BaseModel):
    user_id: uuid.UUID
    total_tokens: int
    total_conversations: int
    active_conversations: int
    archived_conversations: int
    deleted_conversations: int


class ErrorBody(BaseModel):
    error: str
    code: str
    detail: object | None = None
