"""Taking a conversation's turn: the lease that serialises turns, and the user message to
answer (new, pending, regenerated or edited).

The lease is a timestamp on the conversation row (`turn_lock_until`): turns on one
conversation never interleave, across processes, and no database connection is held while
the model is generating.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from advocata_chat.conversations import owned
from advocata_chat.errors import Conflict, NotFound, is_database_down
from advocata_chat.history import preview
from advocata_chat.models import Conversation, ConversationStatus, Message, Role, utcnow
from advocata_chat.runtime import Runtime


class ConversationBusy(Conflict):
    """Another answer in this conversation was still being generated after
    `TURN_WAIT_SECONDS`."""

    code = "conversation_busy"
    example = "Another answer is still being generated in this conversation; retry shortly"


class NothingToAnswer(Conflict):
    """`reply` with no unanswered user message, or `regenerate` with no question to answer."""

    code = "nothing_to_answer"
    example = "There is no unanswered user message to reply to"


class ConversationNotActive(Conflict):
    """The conversation is archived or deleted; set its status to `active` to continue it."""

    code = "conversation_not_active"
    example = "Conversation is archived; set its status to active to continue it"


class CannotEdit(Conflict):
    """Only the last user message of the conversation can be edited."""

    code = "cannot_edit"
    example = "Only the last user message can be edited"


class MessageNotFound(NotFound):
    """No such message in this conversation (or it was replaced by a newer version)."""

    example = "Message not found"


def _lease(rt: Runtime) -> timedelta:
    s = rt.settings
    return timedelta(seconds=s.openai_timeout_seconds * (s.openai_max_retries + 1) + 30)


@dataclass
class TurnStart:
    user_message: Message
    template_id: str | None
    instructions: str | None
    first_answer: bool  # no assistant answer yet: a title may be due
    title_auto: bool
    lease_until: datetime | None = None  # this turn's lease, released only if still ours


async def _last_visible(s, conversation_id: uuid.UUID) -> Message | None:
    return await s.scalar(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.superseded_at.is_(None))
        .order_by(Message.seq.desc())
        .limit(1)
    )


async def _supersede(s, conv: Conversation, messages: list[Message], now) -> None:
    # Old versions stay stored (and their tokens stay counted); they leave the visible chat.
    for m in messages:
        m.superseded_at = now
    conv.messages_count -= len(messages)


async def _prepare(
    s,
    conv: Conversation,
    *,
    content: str | None,
    mode: str,
    edit_id: uuid.UUID | None,
    now,
    fields: dict | None = None,
) -> Message:
    """Find or store the user message this turn answers. `fields`: more columns of a new
    message (its attachments and voice, issue 16)."""
    last = await _last_visible(s, conv.id)
    if mode == "regenerate":
        if last is not None and last.role == Role.assistant:
            await _supersede(s, conv, [last], now)
            last = await _last_visible(s, conv.id)
        if last is None or last.role != Role.user:
            raise NothingToAnswer("There is no answer to regenerate")
        return last
    if mode == "edit":
        target = await s.get(Message, edit_id) if edit_id else None
        if target is None or target.conversation_id != conv.id or target.superseded_at:
            raise MessageNotFound("Message not found")
        later = list(
            await s.scalars(
                select(Message).where(
                    Message.conversation_id == conv.id,
                    Message.superseded_at.is_(None),
                    Message.seq > target.seq,
                )
            )
        )
        if target.role != Role.user or any(m.role == Role.user for m in later):
            raise CannotEdit("Only the last user message can be edited")
        await _supersede(s, conv, [target, *later], now)
        if fields is None:  # an edited question keeps its attachments (issue 16)
            fields = {"attachments": target.attachments}
    elif content is None:  # reply to the pending message
        if last is None or last.role != Role.user:
            raise NothingToAnswer("There is no unanswered user message to reply to")
        return last
    msg = Message(
        conversation_id=conv.id,
        role=Role.user,
        content=content,
        created_at=now,
        replaces_id=edit_id if mode == "edit" else None,
        **(fields or {}),
    )
    s.add(msg)
    conv.messages_count += 1
    conv.last_message_at = conv.updated_at = now
    conv.last_message_preview = preview(content)
    await s.flush()
    return msg


async def begin_turn(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    content: str | None,
    mode: str = "send",
    edit_id: uuid.UUID | None = None,
    fields: dict | None = None,
) -> TurnStart:
    """Take the conversation's turn lease and return the user message to answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + rt.settings.turn_wait_seconds
    while True:
        async with rt.sessions.begin() as s:
            conv = await owned(s, user_id=user_id, conversation_id=conversation_id, for_update=True)
            if conv.status != ConversationStatus.active:
                raise ConversationNotActive(
                    f"Conversation is {conv.status}; set its status to active to continue it"
                )
            now = utcnow()
            if conv.turn_lock_until is None or conv.turn_lock_until <= now:
                conv.turn_lock_until = lease_until = now + _lease(rt)
                msg = await _prepare(
                    s, conv, content=content, mode=mode, edit_id=edit_id, now=now, fields=fields
                )
                answered = await s.scalar(
                    select(Message.id)
                    .where(Message.conversation_id == conv.id, Message.role == Role.assistant)
                    .limit(1)
                )
                return TurnStart(
                    user_message=msg,
                    template_id=conv.template_id,
                    instructions=conv.instructions,
                    first_answer=answered is None,
                    title_auto=conv.title_auto and conv.title is None,
                    lease_until=lease_until,
                )
        if loop.time() >= deadline:
            raise ConversationBusy(
                "Another answer is still being generated in this conversation; retry shortly"
            )
        await asyncio.sleep(0.05)


async def release_turn(
    rt: Runtime, conversation_id: uuid.UUID, lease_until: datetime | None = None
) -> None:
    where = [Conversation.id == conversation_id]
    if lease_until is not None:  # never release a lease a later turn has taken since
        where.append(Conversation.turn_lock_until == lease_until)
    async with rt.sessions.begin() as s:
        await s.execute(update(Conversation).where(*where).values(turn_lock_until=None))


RELEASE_RETRY_DELAYS = (0.5,) * 20 + (2,) * 25  # about 60 s in all, far below a lease


async def release_soon(
    rt: Runtime, conversation_id: uuid.UUID, lease_until: datetime | None
) -> None:
    """Release the lease; if the database is down, keep trying in the background, so a turn
    cut off by an outage does not block the conversation for a whole lease."""
    try:
        await release_turn(rt, conversation_id, lease_until)
        return
    except Exception as exc:
        if not is_database_down(exc):
            raise

    async def retry() -> None:
        for delay in RELEASE_RETRY_DELAYS:
            await asyncio.sleep(delay)
            try:
                await release_turn(rt, conversation_id, lease_until)
                return
            except Exception as exc:
                if not is_database_down(exc):
                    raise

    rt.spawn(retry())
