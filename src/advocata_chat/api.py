"""REST routes. Thin: parse, call a service, return."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from advocata_chat import conversations, limits, turns
from advocata_chat.deps import CurrentPrincipal, CurrentUser, RuntimeDep
from advocata_chat.errors import DatabaseUnavailable, is_database_down
from advocata_chat.models import ConversationStatus
from advocata_chat.schemas import (
    ConversationOut,
    ConversationPage,
    CreateConversation,
    ErrorBody,
    Quota,
    Reply,
    SendMessage,
    TokenStats,
    UpdateConversation,
)
from advocata_chat.streaming import sse_stream

_errors = {
    code: {"model": ErrorBody}
    for code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_404_NOT_FOUND, 422)
}
_turn_errors = {
    **_errors,
    409: {"model": ErrorBody},
    502: {"model": ErrorBody},
    503: {"model": ErrorBody},
}

router = APIRouter(prefix="/api/v1/chat", tags=["chat"], responses=_errors)


@router.post("/conversations", status_code=201, response_model=ConversationOut)
async def create_conversation(body: CreateConversation, user: CurrentUser, rt: RuntimeDep):
    return await conversations.create(
        rt.sessions, settings=rt.settings, user_id=user, data=body, templates=rt.templates
    )


@router.get("/conversations", response_model=ConversationPage)
async def list_conversations(
    user: CurrentUser,
    rt: RuntimeDep,
    status: ConversationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
):
    return await conversations.list_page(
        rt.sessions, user_id=user, status=status, limit=limit, offset=offset
    )


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
async def get_conversation(
    conversation_id: uuid.UUID,
    who: CurrentPrincipal,
    rt: RuntimeDep,
    include_messages: bool = True,
    include_superseded: Annotated[
        bool, Query(description="Also return versions replaced by regenerate or edit")
    ] = False,
):
    """The owner's conversation, or one shared with the caller if they are a lawyer."""
    return await conversations.get(
        rt.sessions,
        user_id=who.user_id,
        conversation_id=conversation_id,
        include_messages=include_messages,
        include_superseded=include_superseded,
        lawyer=who.lawyer,
    )


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut)
async def update_conversation(
    conversation_id: uuid.UUID, body: UpdateConversation, user: CurrentUser, rt: RuntimeDep
):
    return await conversations.update(
        rt.sessions,
        settings=rt.settings,
        user_id=user,
        conversation_id=conversation_id,
        data=body,
    )


@router.delete("/conversations/{conversation_id}", status_code=204)
async def delete_conversation(conversation_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep):
    await conversations.soft_delete(rt.sessions, user_id=user, conversation_id=conversation_id)
    return Response(status_code=204)


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=ConversationOut,
    responses=_turn_errors,
)
async def send_message(
    conversation_id: uuid.UUID,
    body: SendMessage,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
):
    """Send a message and get the whole conversation with the answer. With
    `Accept: text/event-stream`, the answer streams as Server-Sent Events instead, with the
    WebSocket's frames (`message_received`, `sources`, `token`, `message` or `error`)."""
    content = conversations.check_message(rt.settings, body.message_content)
    if _wants_sse(request):
        return await _sse(request, rt, user, conversation_id, content, body.use_rag)
    result = await turns.run_turn(
        rt, user_id=user, conversation_id=conversation_id, content=content, use_rag=body.use_rag
    )
    return await _answered(rt, user, conversation_id, result)


@router.post(
    "/conversations/{conversation_id}/reply",
    response_model=ConversationOut,
    responses=_turn_errors,
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
    request, rt, user, conversation_id, content, use_rag, mode: str = "send"
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
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/stats/tokens", response_model=TokenStats)
async def token_stats(user: CurrentUser, rt: RuntimeDep):
    """Token use over all conversations (deleted ones included: tokens spent stay spent), and
    the quota window."""
    stats = await conversations.token_stats(rt.sessions, user_id=user)
    period = rt.settings.token_quota_period_seconds
    used = await limits.tokens_used(rt.sessions, user_id=user, period_seconds=period)
    stats.quota = Quota(limit=rt.settings.token_quota, used=used, period_seconds=period)
    return stats
