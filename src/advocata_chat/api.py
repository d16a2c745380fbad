"""REST routes. Thin: parse, call a service, return."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from advocata_chat import conversations, turns
from advocata_chat.deps import CurrentUser, RuntimeDep
from advocata_chat.models import ConversationStatus
from advocata_chat.schemas import (
    ConversationOut,
    ConversationPage,
    CreateConversation,
    ErrorBody,
    Reply,
    SendMessage,
    TokenStats,
    UpdateConversation,
)

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
    return await conversations.create(rt.sessions, settings=rt.settings, user_id=user, data=body)


@router.get("/conversations", response_model=ConversationPage)
async def list_conversations(
    user: CurrentUser,
    rt: RuntimeDep,
    status: ConversationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    return await conversations.list_page(
        rt.sessions, user_id=user, status=status, limit=limit, offset=offset
    )


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
async def get_conversation(
    conversation_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep, include_messages: bool = True
):
    return await conversations.get(
        rt.sessions,
        user_id=user,
        conversation_id=conversation_id,
        include_messages=include_messages,
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
    conversation_id: uuid.UUID, body: SendMessage, user: CurrentUser, rt: RuntimeDep
):
    content = conversations.check_message(rt.settings, body.message_content)
    await turns.run_turn(
        rt, user_id=user, conversation_id=conversation_id, content=content, use_rag=body.use_rag
    )
    return await conversations.get(rt.sessions, user_id=user, conversation_id=conversation_id)


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
    conversation_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep, body: Reply | None = None
):
    use_rag = body.use_rag if body else True
    await turns.run_turn(
        rt, user_id=user, conversation_id=conversation_id, content=None, use_rag=use_rag
    )
    return await conversations.get(rt.sessions, user_id=user, conversation_id=conversation_id)


@router.get("/stats/tokens", response_model=TokenStats)
async def token_stats(user: CurrentUser, rt: RuntimeDep):
    return await conversations.token_stats(rt.sessions, user_id=user)
