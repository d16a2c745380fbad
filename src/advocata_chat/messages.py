"""Writing messages: the one place a message and its conversation's counters are stored
(`add`, used by conversations, turns and the LangChain history), and finding or storing the
user message a turn answers (`prepare`: new, pending, regenerated or edited).

Counters move in the same statement as the rest of the conversation row, inside the
caller's transaction: a message is never stored without being counted, or counted twice.
Versions replaced by regenerate or edit stay stored and their tokens stay counted (tokens
spent stay spent); they only leave the visible chat and `messages_count`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from advocata_chat.errors import Conflict, NotFound
from advocata_chat.models import Conversation, Message, Role

TurnKind = Literal["send", "reply", "regenerate", "edit"]
PREVIEW_CHARS = 120


def preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


class NothingToAnswer(Conflict):
    """`reply` with no unanswered user message, or `regenerate` with no question to answer."""

    code = "nothing_to_answer"
    example = "There is no unanswered user message to reply to"


class CannotEdit(Conflict):
    """Only the last user message of the conversation can be edited."""

    code = "cannot_edit"
    example = "Only the last user message can be edited"


class MessageNotFound(NotFound):
    """No such message in this conversation (or it was replaced by a newer version)."""

    example = "Message not found"


async def update_conversation(
    s: AsyncSession,
    conversation_id: uuid.UUID,
    *,
    added: Message | None = None,
    tokens: int = 0,
    superseded: int = 0,
    **values: Any,
) -> tuple[int, int]:
    """One UPDATE of the conversation row: `added` counted as its newest message, `tokens`
    more spent, `superseded` fewer visible messages, and any other column in `values`.
    Returns the conversation's (total_tokens, messages_count) after it."""
    if added is not None:
        values.update(
            messages_count=Conversation.messages_count + (1 - superseded),
            last_message_at=added.created_at,
            updated_at=added.created_at,
            last_message_preview=preview(added.content),
        )
    elif superseded:
        values["messages_count"] = Conversation.messages_count - superseded
    if tokens:
        values["total_tokens"] = Conversation.total_tokens + tokens
    statement = (
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(**values)
        .returning(Conversation.total_tokens, Conversation.messages_count)
    )
    # The session's Conversation object, if any, gets the new values evaluated in Python.
    totals = await s.execute(statement)
    return tuple(totals.one())  # type: ignore[return-value]


async def add(
    s: AsyncSession, msg: Message, *, tokens: int = 0, superseded: int = 0, **values: Any
) -> tuple[int, int]:
    """Store `msg` and count it in its conversation (see `update_conversation`)."""
    s.add(msg)  # flushed by the UPDATE's autoflush, so the INSERT goes first
    return await update_conversation(
        s, msg.conversation_id, added=msg, tokens=tokens, superseded=superseded, **values
    )


async def _last_visible(s: AsyncSession, conversation_id: uuid.UUID) -> Message | None:
    return await s.scalar(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.superseded_at.is_(None))
        .order_by(Message.seq.desc())
        .limit(1)
    )


def _supersede(messages: list[Message], now: datetime) -> int:
    for m in messages:
        m.superseded_at = now
    return len(messages)


async def _edited(
    s: AsyncSession, conversation_id: uuid.UUID, edit_id: uuid.UUID | None, now: datetime
) -> tuple[int, Message]:
    """Supersede the edited message and what follows it; how many left the chat, and the
    edited message."""
    target = await s.get(Message, edit_id) if edit_id else None
    if target is None or target.conversation_id != conversation_id or target.superseded_at:
        raise MessageNotFound("Message not found")
    later = list(
        await s.scalars(
            select(Message).where(
                Message.conversation_id == conversation_id,
                Message.superseded_at.is_(None),
                Message.seq > target.seq,
            )
        )
    )
    if target.role != Role.user or any(m.role == Role.user for m in later):
        raise CannotEdit("Only the last user message can be edited")
    return _supersede([target, *later], now), target


async def prepare(
    s: AsyncSession,
    conversation_id: uuid.UUID,
    *,
    kind: TurnKind,
    content: str | None,
    edit_id: uuid.UUID | None,
    now: datetime,
    fields: dict[str, Any] | None = None,
    **values: Any,
) -> Message:
    """Find or store the user message this turn answers, and write `values` (the turn's
    lease) to the conversation row in the same UPDATE as the counters. `fields`: more
    columns of a new message (its attachments and voice)."""
    if kind in ("reply", "regenerate"):
        return await _pending(
            s, conversation_id, regenerate=kind == "regenerate", now=now, **values
        )
    superseded = 0
    if kind == "edit":
        superseded, target = await _edited(s, conversation_id, edit_id, now)
        # An edited question keeps its attachments unless it brings its own.
        fields = fields or {"attachments": target.attachments}
    msg = Message(
        id=uuid.uuid4(),
        conversation_id=conversation_id,
        role=Role.user,
        content=content,
        created_at=now,
        replaces_id=edit_id if kind == "edit" else None,
        **(fields or {}),
    )
    await add(s, msg, superseded=superseded, **values)
    return msg


async def _pending(
    s: AsyncSession, conversation_id: uuid.UUID, *, regenerate: bool, now: datetime, **values
) -> Message:
    """The last user message, to answer (again): regenerate first supersedes its answer."""
    last = await _last_visible(s, conversation_id)
    superseded = 0
    if regenerate and last is not None and last.role == Role.assistant:
        superseded = _supersede([last], now)
        last = await _last_visible(s, conversation_id)
    if last is None or last.role != Role.user:
        if regenerate:
            raise NothingToAnswer("There is no answer to regenerate")
        raise NothingToAnswer("There is no unanswered user message to reply to")
    await update_conversation(s, conversation_id, superseded=superseded, **values)
    return last
