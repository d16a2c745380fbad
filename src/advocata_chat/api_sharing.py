"""REST routes: read access to a conversation for lawyers."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from advocata_chat import sharing
from advocata_chat.deps import CurrentPrincipal, CurrentUser, RuntimeDep
from advocata_chat.errors import error_responses
from advocata_chat.responses import AUTH, CONV, CONVERSATION, DB, JSON_BODY
from advocata_chat.schemas import ConversationSummary, ShareIn, ShareOut
from advocata_chat.sharing import ShareNotFound

router = APIRouter(prefix="/api/v1/chat")


@router.post(
    CONV + "/shares",
    status_code=201,
    response_model=ShareOut,
    tags=["sharing"],
    summary="Share a conversation with a lawyer",
    responses=error_responses(*AUTH, *DB, *CONVERSATION, *JSON_BODY),
)
async def share(conversation_id: uuid.UUID, body: ShareIn, user: CurrentUser, rt: RuntimeDep):
    """Give a lawyer (a user whose token has `role: lawyer`) read access: they can read the
    conversation and export it, and every write stays a 404 for them. Sharing again is
    harmless; sharing with yourself is a 422."""
    return await sharing.grant(
        rt.sessions, owner=user, conversation_id=conversation_id, grantee=body.user_id
    )


@router.get(
    CONV + "/shares",
    response_model=list[ShareOut],
    tags=["sharing"],
    summary="List who a conversation is shared with",
    responses=error_responses(*AUTH, *DB, *CONVERSATION),
)
async def list_shares(conversation_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep):
    """The lawyers the owner has shared this conversation with."""
    return await sharing.list_grants(rt.sessions, owner=user, conversation_id=conversation_id)


@router.delete(
    CONV + "/shares/{grantee_id}",
    status_code=204,
    tags=["sharing"],
    summary="Revoke a lawyer's access",
    responses=error_responses(*AUTH, *DB, *CONVERSATION, ShareNotFound),
)
async def revoke_share(
    conversation_id: uuid.UUID, grantee_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep
):
    """Revoke at once: the next request by that lawyer gets a 404."""
    await sharing.revoke(
        rt.sessions, owner=user, conversation_id=conversation_id, grantee=grantee_id
    )
    return Response(status_code=204)


@router.get(
    "/shared",
    response_model=list[ConversationSummary],
    tags=["sharing"],
    summary="Conversations shared with me",
    responses=error_responses(*AUTH, *DB),
)
async def shared_with_me(who: CurrentPrincipal, rt: RuntimeDep):
    """Conversations shared with you (lawyers only; empty for everyone else)."""
    return await sharing.shared_with(rt.sessions, lawyer=who.user_id, is_lawyer=who.lawyer)
