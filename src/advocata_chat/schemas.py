"""Request and response bodies. Field names and shapes follow the seed's REST contract;
every field is described, and every body has an example (`examples.py`), for the OpenAPI
document a client is generated from."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from advocata_chat import examples as ex


def _no_nul(value: object) -> object:
    # PostgreSQL text cannot hold NUL characters; they carry no meaning in a message anyway.
    return value.replace("\x00", "") if isinstance(value, str) else value


Text = Annotated[str, BeforeValidator(_no_nul)]
NonBlank = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1)]


def _example(*values: Any, **config: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(values)}, **config)


USE_RAG = "Answer from the user's documents (with `[n]` citations); false: plain chat"
PAGE = {
    "total": "Items in all pages",
    "limit": "Page size asked for",
    "offset": "Items skipped",
    "has_more": "Whether another page follows",
}


class CreateConversation(BaseModel):
    model_config = _example(
        {
            "initial_message": "Помогите разобраться в вопросе по ДТП",
            "title": "Консультация по ДТП",
        },
        {"template_id": "dtp_osago", "instructions": "Отвечай кратко, по пунктам"},
    )

    initial_message: NonBlank | None = Field(
        None, description="First user message, stored unanswered: answer it with POST .../reply"
    )
    title: NonBlank | None = Field(
        None, description="Title; without one, the first answer names the conversation"
    )
    template_id: str | None = Field(
        None, description="A legal template to apply (see GET /api/v1/chat/templates)"
    )
    instructions: NonBlank | None = Field(
        None,
        description="Extra instruction for this conversation, after the base legal prompt "
        "(which it cannot override); at most `MAX_INSTRUCTIONS_CHARS`",
    )


class SendMessage(BaseModel):
    model_config = _example(
        {
            "message_content": "Могу ли я получить компенсацию если виновник без ОСАГО?",
            "use_rag": True,
        }
    )

    message_content: NonBlank = Field(
        description="The user's message; at most `MAX_MESSAGE_CHARS` characters"
    )
    use_rag: bool = Field(True, description=USE_RAG)
    attachments: list[uuid.UUID] = Field(
        [],
        description="Ids of the caller's uploaded documents (photos, scans) the message "
        "carries, at most `MAX_ATTACHMENTS`: their text is a numbered source of the answer",
    )


class AttachmentOut(BaseModel):
    model_config = _example(ex.ATTACHMENT)

    document_id: uuid.UUID = Field(description="The attached document")
    title: str = Field(description="Its title (as in citations)")
    filename: str = Field(description="The uploaded file's name")
    media_type: str = Field(description="Its type, e.g. image/jpeg")
    page_count: int | None = Field(None, description="Pages (an image is one)")
    ocr_confidence: float | None = Field(
        None, description="Mean OCR word confidence 0..1; null when no OCR was needed"
    )


class VoiceOut(BaseModel):
    model_config = _example(ex.VOICE)

    transcript: str = Field(description="What the speech recogniser heard")
    language: str | None = Field(None, description="The language it reported, e.g. russian")
    duration_seconds: float | None = Field(None, description="The recording's length")
    media_type: str = Field(description="The uploaded audio's type, e.g. audio/webm")
    model: str = Field(description="The transcription model")


class VoiceUploadOut(BaseModel):
    """A recording waiting for the WebSocket's `{"type": "voice", "upload_id"}` frame."""

    model_config = _example(ex.VOICE_UPLOAD, from_attributes=True)

    id: uuid.UUID = Field(description="The `upload_id` to send in the `voice` frame")
    conversation_id: uuid.UUID = Field(description="The conversation it may be sent in")
    media_type: str = Field(description="The recording's type, read from its bytes")
    duration_seconds: float = Field(description="The recording's length")
    size_bytes: int = Field(description="The recording's size")
    created_at: datetime = Field(description="When it was uploaded")
    expires_at: datetime = Field(
        description="Gone after this unless sent first (`VOICE_UPLOAD_TTL_SECONDS`)"
    )


class Reply(BaseModel):
    model_config = _example({"use_rag": True})

    use_rag: bool = Field(True, description=USE_RAG)


class UpdateConversation(BaseModel):
    model_config = _example(
        {"title": "ДТП 12 марта: компенсация без ОСАГО"}, {"status": "archived"}
    )

    title: NonBlank | None = Field(None, description="New title")
    instructions: Text | None = Field(None, description="Set the instruction; empty clears it")
    status: Literal["active", "archived"] | None = Field(
        None, description="Archive or unarchive; also restores a deleted conversation"
    )


class MessageOut(BaseModel):
    model_config = _example(ex.ANSWER_MESSAGE, from_attributes=True)

    id: uuid.UUID = Field(description="Message id")
    conversation_id: uuid.UUID = Field(description="The conversation it belongs to")
    role: str = Field(description="`user` or `assistant`")
    content: str = Field(description="The text; an answer cites its sources as `[n]`")
    token_count: int | None = Field(
        description="Tokens of the model call that produced this answer (prompt + "
        "completion); null for user messages"
    )
    referenced_documents: list[str] = Field([], description="Ids of the documents the answer cites")
    citations: list[dict] = Field(
        [],
        description="One per `[n]` in the answer: `n`, `document_id`, `chunk_id`, `title`, "
        "`page`, the chunk's `start`/`end`, the `quote` and its `quote_start`/`quote_end` in "
        "the document's extracted text",
    )
    status: str = Field(description="complete, interrupted (stopped early) or failed")
    generation: dict = Field(
        default_factory=dict,
        description="What produced an answer: prompt versions (name → sha256 prefix), model, "
        "template, whether a custom instruction applied, retrieval settings; `{}` for user "
        "messages",
    )
    superseded_at: datetime | None = Field(
        None, description="Set when a regenerated or edited version replaced this message"
    )
    replaces_id: uuid.UUID | None = Field(None, description="The message this one edits")
    attachments: list[AttachmentOut] = Field(
        [], description="Documents (photos, scans) the user message carries"
    )
    voice: VoiceOut | None = Field(
        None, description="For a question sent as speech: its transcript, language, duration"
    )
    created_at: datetime = Field(description="When it was stored")


class ConversationBase(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Conversation id")
    user_id: uuid.UUID = Field(description="The owner (the token's subject)")
    title: str | None = Field(description="Title; null until the first answer names it")
    status: str = Field(description="active, archived or deleted")
    total_tokens: int = Field(
        description="Tokens spent in this conversation, superseded answers included"
    )
    messages_count: int = Field(description="Visible messages (superseded ones not counted)")
    template_id: str | None = Field(None, description="The template applied, if any")
    instructions: str | None = Field(None, description="The conversation's extra instruction")
    created_at: datetime = Field(description="When it was created")
    updated_at: datetime = Field(description="Last change to the conversation or its messages")
    last_message_at: datetime = Field(description="When the last message was stored")


class ConversationOut(ConversationBase):
    model_config = _example(ex.CONVERSATION, ex.CONVERSATION_CREATED, from_attributes=True)

    messages: list[MessageOut] = Field(
        default_factory=list, description="Oldest first; empty when include_messages=false"
    )


class ConversationSummary(ConversationBase):
    model_config = _example(ex.CONVERSATION_SUMMARY, from_attributes=True)

    last_message_preview: str | None = Field(
        description="The start of the last visible message; null when there is none"
    )


class ConversationPage(BaseModel):
    model_config = _example(ex.CONVERSATION_PAGE)

    items: list[ConversationSummary] = Field(description="This page, newest activity first")
    total: int = Field(description=PAGE["total"])
    limit: int = Field(description=PAGE["limit"])
    offset: int = Field(description=PAGE["offset"])
    has_more: bool = Field(description=PAGE["has_more"])


class Quota(BaseModel):
    limit: int = Field(description="Tokens per period; 0 means unlimited")
    used: int = Field(description="Tokens used in the current period")
    period_seconds: int = Field(description="The period's length, counted back from now")


class TokenStats(BaseModel):
    model_config = _example(ex.TOKEN_STATS)

    user_id: uuid.UUID = Field(description="The caller")
    total_tokens: int = Field(description="Tokens over all conversations, deleted ones included")
    total_conversations: int = Field(description="Conversations of every status")
    active_conversations: int = Field(description="Conversations with status active")
    archived_conversations: int = Field(description="Conversations with status archived")
    deleted_conversations: int = Field(description="Conversations with status deleted")
    quota: Quota | None = Field(None, description="The token quota and its use")


class ErrorBody(BaseModel):
    """The one error body of every endpoint (and, with `type: error`, of the WebSocket)."""

    model_config = _example({"error": "Conversation not found", "code": "not_found"})

    error: str = Field(description="What went wrong, for a person")
    code: str = Field(description="Machine-readable code (see docs/api.md#errors)")
    detail: object | None = Field(
        None,
        description="Structured detail: the invalid fields for `validation_error`, the stored "
        "`user_message_id` and the `retry` call after a model or database failure in a turn",
    )


class Progress(BaseModel):
    done: int = Field(description="Units done")
    total: int | None = Field(description="Units in all; null until known")
    unit: Literal["chunks"] = Field(description="What is counted")


class DocumentOut(BaseModel):
    model_config = _example(ex.DOCUMENT, from_attributes=True)

    id: uuid.UUID = Field(description="Document id")
    user_id: uuid.UUID = Field(description="The owner")
    title: str = Field(description="Shown in citations")
    filename: str = Field(description="The uploaded file's name")
    media_type: str = Field(description="MIME type, from the file's extension")
    size_bytes: int = Field(description="Size of the uploaded file")
    sha256: str = Field(description="Of the file's bytes; the same bytes are stored once")
    status: str = Field(description="queued (waiting for a worker), processing, ready or failed")
    error: str | None = Field(None, description="Why indexing failed")
    error_code: str | None = Field(
        None,
        description="The failure's machine code: a refusal of the file (`unreadable_file`, "
        "`empty_document`, `document_too_large`, `extraction_timeout`, …), or "
        "`indexing_failed` for an error on our side",
    )
    progress: Progress | None = Field(
        None, description="While `processing`: chunks embedded so far, of how many"
    )
    chunk_count: int = Field(description="Indexed chunks")
    page_count: int | None = Field(
        description="Pages of a PDF, frames of an image (a photo is one page); null for other "
        "formats"
    )
    ocr_confidence: float | None = Field(
        None,
        description="Mean word confidence (0..1) of the text recognised by OCR in an image or "
        "in a PDF's scanned pages; null when no OCR was needed",
    )
    created_at: datetime = Field(description="When it was uploaded")
    updated_at: datetime = Field(description="Last status change")


class DocumentPage(BaseModel):
    model_config = _example(
        {"items": [ex.DOCUMENT], "total": 1, "limit": 50, "offset": 0, "has_more": False}
    )

    items: list[DocumentOut] = Field(description="This page, newest first")
    total: int = Field(description=PAGE["total"])
    limit: int = Field(description=PAGE["limit"])
    offset: int = Field(description=PAGE["offset"])
    has_more: bool = Field(description=PAGE["has_more"])


class SearchRequest(BaseModel):
    model_config = _example({"query": "Во сколько оценён ущерб автомобилю?", "top_k": 5})

    query: NonBlank = Field(max_length=2000, description="A question, as a user would ask it")
    top_k: int = Field(5, ge=1, le=50, description="Chunks to return")


class SearchResult(BaseModel):
    model_config = _example(ex.SOURCE)

    chunk_id: str = Field(description="Chunk id")
    document_id: uuid.UUID = Field(description="The document it is from")
    title: str = Field(description="The document's title")
    content: str = Field(description="The chunk's text")
    score: float = Field(description="fused reciprocal-rank score")
    similarity: float | None = Field(description="cosine similarity, if vector search found it")
    bm25: float | None = Field(description="full-text BM25 score, if text search found it")
    found_by: Literal["vector", "text", "both"] = Field(description="Which retriever found it")
    start: int = Field(description="start of the chunk in the document's extracted text")
    end: int = Field(description="end of the chunk in the document's extracted text")
    page: int | None = Field(description="PDF page the chunk starts on; null for other formats")


class SearchResponse(BaseModel):
    model_config = _example(
        {"query": "Во сколько оценён ущерб автомобилю?", "results": [ex.SOURCE]}
    )

    query: str = Field(description="The query, as searched")
    results: list[SearchResult] = Field(description="Best first")


class TemplateOut(BaseModel):
    model_config = _example(ex.TEMPLATE)

    id: str = Field(description="Pass as `template_id` when creating a conversation")
    title: str = Field(description="Also the conversation's title, unless one is given")
    description: str = Field(description="What the template is for")
    system_addition: str = Field(description="Added to the system prompt, after the base one")
    suggested_questions: list[str] = Field(description="Questions to offer the user")
    facts_to_collect: list[str] = Field(description="What the assistant should find out")


class Regenerate(BaseModel):
    model_config = _example({"use_rag": True})

    use_rag: bool = Field(True, description=USE_RAG)


class EditMessage(BaseModel):
    model_config = _example(
        {
            "content": "Могу ли я получить компенсацию, если у виновника ДТП нет полиса ОСАГО?",
            "use_rag": True,
        }
    )

    content: NonBlank = Field(description="The new text of the last user message")
    use_rag: bool = Field(True, description=USE_RAG)


class FeedbackIn(BaseModel):
    model_config = _example({"rating": "up", "comment": "Понятно и со ссылкой на документ"})

    rating: Literal["up", "down"] = Field(description="👍 `up` or 👎 `down`")
    comment: Text | None = Field(None, max_length=2000, description="Why, in the user's words")


class FeedbackOut(BaseModel):
    model_config = _example(ex.FEEDBACK)

    message_id: uuid.UUID = Field(description="The rated assistant answer")
    rating: Literal["up", "down"] = Field(description="👍 `up` or 👎 `down`")
    comment: str | None = Field(description="The user's comment")
    created_at: datetime = Field(description="First rated")
    updated_at: datetime = Field(description="Last changed")


class FeedbackGroup(BaseModel):
    answer_prompt: str | None = Field(description="sha256 prefix of the answer/chat prompt")
    model: str | None = Field(description="The model that answered")
    up: int = Field(description="👍 count")
    down: int = Field(description="👎 count")


class FeedbackSummary(BaseModel):
    model_config = _example(ex.FEEDBACK_SUMMARY)

    scope: Literal["mine", "all"] = Field(
        description="`all` for the `admin` and `prompt_engineer` roles, else `mine`"
    )
    up: int = Field(description="👍 count")
    down: int = Field(description="👎 count")
    by_prompt_version: list[FeedbackGroup] = Field(
        description="Counts per answer-prompt version and model"
    )


class ShareIn(BaseModel):
    model_config = _example({"user_id": ex.LAWYER_ID})

    user_id: uuid.UUID = Field(description="The lawyer to give read access to")


class ShareOut(BaseModel):
    model_config = _example(
        {
            "conversation_id": ex.CONVERSATION_ID,
            "user_id": ex.LAWYER_ID,
            "created_at": "2024-11-14T16:10:00Z",
        }
    )

    conversation_id: uuid.UUID = Field(description="The shared conversation")
    user_id: uuid.UUID = Field(description="The lawyer who can read it")
    created_at: datetime = Field(description="When it was shared")


class PromptOut(BaseModel):
    name: str = Field(description="The prompt file's name without `.yaml`")
    sha256: str | None = Field(description="Version in use (file and its includes); null if none")
    description: str = Field(description="The file's comment for prompt engineers")
    variables: list[str] = Field(description="The variables the prompt takes")
    loaded_at: datetime | None = Field(description="When the version in use was loaded")
    error: str | None = Field(
        description="Why the file on disk is not in use (YAML error, wrong variables); "
        "the last good version answers meanwhile"
    )


class PromptList(BaseModel):
    model_config = _example(ex.PROMPTS)

    live_reload: bool = Field(description="Edits take effect on the next message (development)")
    model: str = Field(
        description="The chat model that answers: its name, or offline-extractive when none is set"
    )
    prompts: list[PromptOut] = Field(description="Every prompt file, by name")


class Health(BaseModel):
    model_config = _example({"status": "ok"})

    status: Literal["ok"] = Field(description="Always `ok`: the process answers")


class Readiness(BaseModel):
    model_config = _example(
        {"status": "ready", "database": "ok", "migrations": "head"},
        {"status": "unavailable", "database": "unreachable", "migrations": None},
    )

    status: Literal["ready", "unavailable"] = Field(description="`ready` only if both are fine")
    database: Literal["ok", "unreachable"] = Field(description="Whether the database answers")
    migrations: str | None = Field(
        description="`head`, or the current revision and the head; null when unreachable"
    )


SSE_EXAMPLE = ex.SSE
EXPORT_EXAMPLE = ex.EXPORT_MD
