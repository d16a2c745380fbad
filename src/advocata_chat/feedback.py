"""👍/👎 on assistant answers, traceable to the prompt versions that produced them."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import async_sessionmaker

from advocata_chat.conversations import owned
from advocata_chat.errors import InvalidInput, NotFound
from advocata_chat.models import Feedback, Message, Role, utcnow
from advocata_chat.schemas import FeedbackGroup, FeedbackIn, FeedbackOut, FeedbackSummary

RATINGS = {"up": 1, "down": -1}


class FeedbackNotFound(NotFound):
    example = "No feedback on this message"


def _out(row: Feedback) -> FeedbackOut:
    return FeedbackOut(
        message_id=row.message_id,
        rating="up" if row.rating > 0 else "down",
        comment=row.comment,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _assistant_message(s, *, user_id, conversation_id, message_id) -> Message:
    await owned(s, user_id=user_id, conversation_id=conversation_id)
    msg = await s.get(Message, message_id)
    if msg is None or msg.conversation_id != conversation_id:
        raise FeedbackNotFound("Message not found")
    if msg.role != Role.assistant:
        raise InvalidInput("Feedback can only be given on assistant answers")
    return msg


async def put(
    sessions: async_sessionmaker,
    *,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    data: FeedbackIn,
) -> FeedbackOut:
    """Set or change the owner's rating of an answer."""
    async with sessions.begin() as s:
        await _assistant_message(
            s, user_id=user_id, conversation_id=conversation_id, message_id=message_id
        )
        now = utcnow()
        values = {"rating": RATINGS[data.rating], "comment": data.comment, "updated_at": now}
        stmt = (
            insert(Feedback)
            .values(message_id=message_id, user_id=user_id, created_at=now, **values)
            .on_conflict_do_update(index_elements=[Feedback.message_id], set_=values)
            .returning(Feedback)
        )
        row = (await s.scalars(stmt, execution_options={"populate_existing": True})).one()
        return _out(row)


async def get(
    sessions: async_sessionmaker,
    *,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
) -> FeedbackOut:
    async with sessions() as s:
        await _assistant_message(
            s, user_id=user_id, conversation_id=conversation_id, message_id=message_id
        )
        row = await s.get(Feedback, message_id)
        if row is None:
            raise FeedbackNotFound("No feedback on this message")
        return _out(row)


async def delete(
    sessions: async_sessionmaker,
    *,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
) -> None:
    async with sessions.begin() as s:
        await _assistant_message(
            s, user_id=user_id, conversation_id=conversation_id, message_id=message_id
        )
        row = await s.get(Feedback, message_id)
        if row is None:
            raise FeedbackNotFound("No feedback on this message")
        await s.delete(row)


async def summary(
    sessions: async_sessionmaker, *, user_id: uuid.UUID, everyone: bool
) -> FeedbackSummary:
    """Counts of 👍/👎, overall and per answer-prompt version and model.

    Users see their own; the `admin` and `prompt_engineer` roles see everyone's.
    """
    prompts = Message.generation["prompts"]
    version = func.coalesce(prompts["answer"].astext, prompts["chat"].astext)
    model = Message.generation["model"].astext
    up = func.count().filter(Feedback.rating > 0)
    down = func.count().filter(Feedback.rating < 0)
    query = (
        select(version, model, up, down)
        .join(Message, Message.id == Feedback.message_id)
        .group_by(version, model)
        .order_by(version, model)
    )
    if not everyone:
        query = query.where(Feedback.user_id == user_id)
    async with sessions() as s:
        rows = (await s.execute(query)).all()
    groups = [FeedbackGroup(answer_prompt=v, model=m, up=u, down=d) for v, m, u, d in rows]
    return FeedbackSummary(
        scope="all" if everyone else "mine",
        up=sum(g.up for g in groups),
        down=sum(g.down for g in groups),
        by_prompt_version=groups,
    )
