"""LangChain chat history over our own `messages` table: one source of truth."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from advocata_chat.models import Conversation, Message, Role, utcnow
from advocata_chat.tokens import count_tokens

_TO_LC = {Role.user: HumanMessage, Role.assistant: AIMessage, Role.system: SystemMessage}
_FROM_LC = {"human": Role.user, "ai": Role.assistant, "system": Role.system}
PREVIEW_CHARS = 120


def preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


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
        query = (
            select(Message.role, Message.content)
            .where(
                Message.conversation_id == self.conversation_id,
                Message.superseded_at.is_(None),  # replaced by a regenerated or edited version
            )
            .order_by(Message.seq.desc())
            .limit(self.max_messages)
        )
        if self.before_seq is not None:
            query = query.where(Message.seq < self.before_seq)
        async with self.sessions() as s:
            rows = (await s.execute(query)).all()
        return [_TO_LC[Role(r)](content=c) for r, c in fit_window(rows, self.max_tokens)]

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        if not messages:
            return
        now = utcnow()
        async with self.sessions.begin() as s:
            for m in messages:
                s.add(
                    Message(
                        conversation_id=self.conversation_id,
                        role=_FROM_LC.get(m.type, Role.user),
                        content=m.text,
                        created_at=now,
                    )
                )
            await s.execute(
                update(Conversation)
                .where(Conversation.id == self.conversation_id)
                .values(
                    messages_count=Conversation.messages_count + len(messages),
                    last_message_at=now,
                    updated_at=now,
                    last_message_preview=preview(messages[-1].text),
                )
            )

    async def aclear(self) -> None:
        async with self.sessions.begin() as s:
            await s.execute(delete(Message).where(Message.conversation_id == self.conversation_id))
            await s.execute(
                update(Conversation)
                .where(Conversation.id == self.conversation_id)
                .values(messages_count=0, total_tokens=0, last_message_preview=None)
            )

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        raise NotImplementedError("PostgresChatHistory is async-only: use aget_messages()")

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        raise NotImplementedError("PostgresChatHistory is async-only: use aadd_messages()")

    def clear(self) -> None:
        raise NotImplementedError("PostgresChatHistory is async-only: use aclear()")
