"""Sharing a conversation with a lawyer: read-only access, granted and revoked by the owner."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from advocata_chat.conversations import owned
from advocata_chat.errors import InvalidInput, NotFound
from advocata_chat.models import Conversation, ConversationStatus, Share, utcnow
from advocata_chat.schemas import ConversationSummary, ShareOut


class ShareNotFound(NotFound):
    example = "Share not found"

    def __init__(self) -> None:
        super().__init__("Share not found")


def _out(row: Share) -> ShareOut:
    return ShareOut(
        conversation_id=row.conversation_id, user_id=row.grantee_id, created_at=row.created_at
    )


async def grant(
    sessions: async_sessionmaker,
    *,
    owner: uuid.UUID,
    conversation_id: uuid.UUID,
    grantee: uuid.UUID,
) -> ShareOut:
    if grantee == owner:
        raise InvalidInput(
            "You already own this conversation", detail=[{"loc": ["body", "user_id"]}]
        )
    async with sessions.begin() as s:
        await owned(s, user_id=owner, conversation_id=conversation_id)
        await s.execute(
            insert(Share)
            .values(conversation_id=conversation_id, grantee_id=grantee, created_at=utcnow())
            .on_conflict_do_nothing()
        )
        row = await s.get(Share, (conversation_id, grantee))
        return _out(row)


async def list_grants(
    sessions: async_sessionmaker, *, owner: uuid.UUID, conversation_id: uuid.UUID
) -> list[ShareOut]:
    async with sessions() as s:
        await owned(s, user_id=owner, conversation_id=conversation_id)
        rows = await s.scalars(
            select(Share).where(Share.conversation_id == conversation_id).order_by(Share.created_at)
        )
        return [_out(r) for r in rows]


async def revoke(
    sessions: async_sessionmaker,
    *,
    owner: uuid.UUID,
    conversation_id: uuid.UUID,
    grantee: uuid.UUID,
) -> None:
    async with sessions.begin() as s:
        await owned(s, user_id=owner, conversation_id=conversation_id)
        result = await s.execute(
            delete(Share).where(
                Share.conversation_id == conversation_id, Share.grantee_id == grantee
            )
        )
        if result.rowcount == 0:
            raise ShareNotFound()


async def shared_with(
    sessions: async_sessionmaker, *, lawyer: uuid.UUID, is_lawyer: bool
) -> list[ConversationSummary]:
    """Conversations shared with a lawyer. Shares to users without the role grant nothing."""
    if not is_lawyer:
        return []
    async with sessions() as s:
        rows = await s.scalars(
            select(Conversation)
            .join(Share, Share.conversation_id == Conversation.id)
            .where(Share.grantee_id == lawyer, Conversation.status != ConversationStatus.deleted)
            .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
        )
        return [ConversationSummary.model_validate(c) for c in rows]
