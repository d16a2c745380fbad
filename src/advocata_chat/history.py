"""LangChain chat history over our own `messages` table: one source of truth."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from advocata_chat import messages as writer
from advocata_chat.models import Message, Role, utcnow
from advocata_chat.tokens import count_tokens

_TO_LC = {Role.user: HumanMessage, Role.assistant: AIMessage, Role.system: SystemMessage}
_FROM_LC = {"human": Role.user, "ai": Role.assistant, "system": Role.system}


def message_cost(content: str) -> int:
    return count_tokens(content) + 3  # the chat framing of one message


def fit_window(newest_first: Sequence[tuple[str, str]], budget: int) -> list[tuple[str, str]]:
    """The longest run of the newest (role, content) pairs within `budget` tokens, oldest
    first. It stops at the first message that does not fit, so the history never has gaps."""
    window: list[tuple[str, str]] = []
    for role, content in newest_first:
        cost = message_cost(content)
        if cost > budget:
            break
        budget -= cost
        window.append((role, content))
    window.reverse()
    return window


async def window(
    s: AsyncSession,
    conversation_id: uuid.UUID,
    *,
    max_messages: int,
    max_tokens: int,
    before_seq: int | None = None,
) -> list[BaseMessage]:
    """The bounded window of the conversation's visible messages, oldest first (see
    `PostgresChatHistory`); read in the caller's transaction."""
    query = (
        select(Message.role, Message.content)
        .where(
            Message.conversation_id == conversation_id,
            Message.superseded_at.is_(None),  # replaced by a regenerated or edited version
        )
        .order_by(Message.seq.desc())
        .limit(max_messages)
    )
    if before_seq is not None:
        query = query.where(Message.seq < before_seq)
    rows = (await s.execute(query)).all()
    return [_TO_LC[Role(r)](content=c) for r, c in fit_window(rows, max_tokens)]


class PostgresChatHistory(BaseChatMessageHistory):
    """The bounded window of a conversation's messages, oldest first.

    `before_seq` excludes the message being answered and anything after it. The window
    holds at most `max_messages` and `max_tokens`, dropping the oldest first, so the cost of
    a turn does not grow with the length of the chat.
    """

    def __init__(
        self,
        sessions: async_sessionmaker,
        conversation_id: uuid.UUID,
        *,
        max_messages: int = 40,
        max_tokens: int = 3000,
        before_seq: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.conversation_id = conversation_id
        self.max_messages = max_messages
        self.max_tokens = max_tokens
        self.before_seq = before_seq

    async def aget_messages(self) -> list[BaseMessage]:
        async with self.sessions() as s:
            return await window(
                s,
                self.conversation_id,
                max_messages=self.max_messages,
                max_tokens=self.max_tokens,
                before_seq=self.before_seq,
            )

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        now = utcnow()
        async with self.sessions.begin() as s:
            for m in messages:
                role = _FROM_LC.get(m.type, Role.user)
                msg = Message(conversation_id=self.conversation_id, role=role, content=m.text)
                msg.created_at = now
                await writer.add(s, msg)

    async def aclear(self) -> None:
        """Hide every message, as regenerate and edit hide old versions: they stay stored,
        and the tokens they cost stay counted."""
        async with self.sessions.begin() as s:
            hidden = await s.execute(
                update(Message)
                .where(
                    Message.conversation_id == self.conversation_id,
                    Message.superseded_at.is_(None),
                )
                .values(superseded_at=utcnow())
            )
            await writer.update_conversation(
                s, self.conversation_id, superseded=hidden.rowcount, last_message_preview=None
            )

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        raise NotImplementedError("PostgresChatHistory is async-only: use aget_messages()")

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        raise NotImplementedError("PostgresChatHistory is async-only: use aadd_messages()")

    def clear(self) -> None:
        raise NotImplementedError("PostgresChatHistory is async-only: use aclear()")
