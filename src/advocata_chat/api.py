"""REST routes of conversations: create, list, read, change, delete, and token stats.
Thin: parse, call a service, return. The turn routes are in api_turns.py."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from advocata_chat import conversations, limits
from advocata_chat.deps import CurrentPrincipal, CurrentUser, RuntimeDep
from advocata_chat.errors import error_responses
from advocata_chat.models import ConversationStatus
from advocata_chat.responses import AUTH, CONVERSATION, DB, JSON_BODY, PARAMS
from advocata_chat.schemas import (
    ConversationOut,
    ConversationPage,
    CreateConversation,
    Quota,
    TokenStats,
    UpdateConversation,
)

__all__ = ["AUTH", "CONVERSATION", "DB", "JSON_BODY", "PARAMS", "router"]  # groups: responses.py

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
