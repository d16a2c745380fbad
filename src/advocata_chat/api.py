"""REST routes. Thin: parse, call a service, return."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from advocata_chat import conversations, limits, turns
from advocata_chat.deps import CurrentPrincipal, CurrentUser, RuntimeDep
from advocata_chat.errors import (
    ConversationNotFound,
    DatabaseUnavailable,
    InvalidInput,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    PayloadTooLarge,
    Unauthorized,
    error_responses,
    is_database_down,
)
from advocata_chat.lease import ConversationBusy, ConversationNotActive, NothingToAnswer
from advocata_chat.limits import QuotaExceeded, RateLimited
from advocata_chat.models import ConversationStatus
from advocata_chat.schemas import (
    SSE_EXAMPLE,
    ConversationOut,
    ConversationPage,
    CreateConversation,
    Quota,
    Reply,
    SendMessage,
    TokenStats,
    UpdateConversation,
)
from advocata_chat.streaming import sse_stream

# What a route can return, by what it takes; each route's `responses=` lists its groups.
# tests/test_openapi.py derives the same from the route table and fails on a missing one.
AUTH = (Unauthorized,)  # a bearer token
DB = (DatabaseUnavailable,)  # the route reads or writes the database
PARAMS = (InvalidInput,)  # query or path parameters
CONVERSATION = (ConversationNotFound, InvalidInput)  # a conversation id in the path
JSON_BODY = (PayloadTooLarge, InvalidInput)
TURN = (
    ConversationNotActive,
    NothingToAnswer,
    ConversationBusy,
    RateLimited,
    QuotaExceeded,
    ModelError,
    ModelUnavailable,
    ModelTimeout,
)
# A turn answers with the conversation, or streams it as Server-Sent Events.
TURN_OK = {
    200: {
        "description": "The conversation with the answer; with `Accept: text/event-stream`, "
        "the turn's frames as Server-Sent Events",
        "content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}},
    }
}

router = APIRouter(prefix="/api/v1/chat", tags=["chat"])


@router.post(
    "/conversations",
    status_code=201,
    response_model=ConversationOut,
    summary="Start a conversation",
    responses=error_responses(*AUTH, *DB, *JSON_BODY),
)
async def create_conversation(body: CreateConversation, user: CurrentUser, rt: RuntimeDep):
    """Create a conversation, optionally with a first user message (`initial_message`), a
    `title`, a legal template (`template_id`, see `GET /templates`) and an extra instruction.
    The first message is stored unanswered: get the answer with `POST .../reply`, or send the
    question with `POST .../messages` instead."""
    return await conversations.create(
        rt.sessions, settings=rt.settings, user_id=user, data=body, templates=rt.templates
    )


@router.get(
    "/conversations",
    response_model=ConversationPage,
    summary="List conversations",
    responses=error_responses(*AUTH, *DB, *PARAMS),
)
async def list_conversations(
    user: CurrentUser,
    rt: RuntimeDep,
    status: Annotated[
        ConversationStatus | None,
        Query(description="Only this status; deleted conversations show only with `deleted`"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="Conversations to skip")] = 0,
):
    """The caller's conversations, most recent activity first, with a preview of the last
    message. Deleted conversations are hidden unless `status=deleted`."""
    return await conversations.list_page(
        rt.sessions, user_id=user, status=status, limit=limit, offset=offset
    )


@router.get(
    "/conversations/{conversation_id}",
    response_model=ConversationOut,
    summary="Get a conversation",
    responses=error_responses(*AUTH, *DB, *CONVERSATION),
)
async def get_conversation(
    conversation_id: uuid.UUID,
    who: CurrentPrincipal,
    rt: RuntimeDep,
    include_messages: Annotated[
        bool, Query(description="Load the messages; `messages` is `[]` when false")
    ] = True,
    include_superseded: Annotated[
        bool, Query(description="Also return versions replaced by regenerate or edit")
    ] = False,
):
    """The caller's conversation with its messages, oldest first, or one shared with the
    caller if their token has `role: lawyer`. Someone else's conversation is a 404, as if it
    did not exist."""
    return await conversations.get(
        rt.sessions,
        user_id=who.user_id,
        conversation_id=conversation_id,
        include_messages=include_messages,
        include_superseded=include_superseded,
        lawyer=who.lawyer,
    )


@router.patch(
    "/conversations/{conversation_id}",
    response_model=ConversationOut,
    summary="Rename, archive or restore a conversation",
    responses=error_responses(*AUTH, *DB, *CONVERSATION, *JSON_BODY),
)
async def update_conversation(
    conversation_id: uuid.UUID, body: UpdateConversation, user: CurrentUser, rt: RuntimeDep
):
    """Change the `title` or the `instructions` (`""` clears them), or the `status`:
    `archived` archives, `active` unarchives or restores a deleted conversation. Fields left
    out are unchanged."""
    return await conversations.update(
        rt.sessions,
        settings=rt.settings,
        user_id=user,
        conversation_id=conversation_id,
        data=body,
    )


@router.delete(
    "/conversations/{conversation_id}",
    status_code=204,
    summary="Delete a conversation",
    responses=error_responses(*AUTH, *DB, *CONVERSATION),
)
async def delete_conversation(conversation_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep):
    """Soft delete: the status becomes `deleted`, the conversation leaves the default list
    and its tokens stay counted in the stats. Idempotent; `PATCH {"status": "active"}`
    restores it."""
    await conversations.soft_delete(rt.sessions, user_id=user, conversation_id=conversation_id)
    return Response(status_code=204)


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=ConversationOut,
    summary="Send a message and get the answer",
    responses={**TURN_OK, **error_responses(*AUTH, *DB, *CONVERSATION, *JSON_BODY, *TURN)},
)
async def send_message(
    conversation_id: uuid.UUID,
    body: SendMessage,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
):
    """Store the user's message, answer it (with `use_rag`, from the user's documents, with
    `[n]` citations) and return the whole conversation. With `Accept: text/event-stream`
    the answer streams as Server-Sent Events instead, with the WebSocket's frames
    (`message_received`, `sources`, `token`, then `message` or `error`).

    If the model fails, the message stays stored and the error's `detail.retry` names the
    `reply` call that answers it; never send it again."""
    content = conversations.check_message(rt.settings, body.message_content)
    media = {"attachments": body.attachments}  # issue 16: photos and scans it carries
    if _wants_sse(request):
        return await _sse(request, rt, user, conversation_id, content, body.use_rag, **media)
    result = await turns.run_turn(
        rt,
        user_id=user,
        conversation_id=conversation_id,
        content=content,
        use_rag=body.use_rag,
        **media,
    )
    return await _answered(rt, user, conversation_id, result)


@router.post(
    "/conversations/{conversation_id}/reply",
    response_model=ConversationOut,
    responses={**TURN_OK, **error_responses(*AUTH, *DB, *CONVERSATION, *JSON_BODY, *TURN)},
    summary="Answer the pending user message",
    description="Generates the assistant's answer to the conversation's last message when "
    "that message is the user's: after creating a conversation with `initial_message`, or to "
    "retry after a model failure. 409 when there is nothing to answer.",
)
async def reply(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    body: Reply | None = None,
):
    use_rag = body.use_rag if body else True
    if _wants_sse(request):
        return await _sse(request, rt, user, conversation_id, None, use_rag)
    result = await turns.run_turn(
        rt, user_id=user, conversation_id=conversation_id, content=None, use_rag=use_rag
    )
    return await _answered(rt, user, conversation_id, result)


async def _answered(rt, user, conversation_id, result: turns.TurnResult):
    """The conversation after a turn. The answer is stored: if the database goes away
    before it can be read back, the 503 names the stored message (never send it again)."""
    try:
        return await conversations.get(rt.sessions, user_id=user, conversation_id=conversation_id)
    except Exception as exc:
        if not is_database_down(exc):
            raise
        raise DatabaseUnavailable(
            conversation_id=conversation_id, user_message_id=result.user_message.id
        ) from exc


def _wants_sse(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


async def _sse(
    request, rt, user, conversation_id, content, use_rag, mode: str = "send", **media
) -> StreamingResponse:
    # Ownership is checked before the stream starts, so a 404 is still a plain 404.
    await conversations.get(
        rt.sessions, user_id=user, conversation_id=conversation_id, include_messages=False
    )
    events = sse_stream(
        rt,
        request.app.state.hub,
        user_id=user,
        conversation_id=conversation_id,
        content=content,
        use_rag=use_rag,
        mode=mode,
        **media,  # issue 16: attachments, voice
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/stats/tokens",
    response_model=TokenStats,
    summary="Token use and quota",
    responses=error_responses(*AUTH, *DB),
)
async def token_stats(user: CurrentUser, rt: RuntimeDep):
    """Tokens used over all the caller's conversations (deleted ones included: tokens spent
    stay spent), conversations per status, and the current quota window."""
    stats = await conversations.token_stats(rt.sessions, user_id=user)
    period = rt.settings.token_quota_period_seconds
    used = await limits.tokens_used(rt.sessions, user_id=user, period_seconds=period)
    stats.quota = Quota(limit=rt.settings.token_quota, used=used, period_seconds=period)
    return stats
