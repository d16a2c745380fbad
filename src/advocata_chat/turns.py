"""One chat turn: store the user's message, run the chain, store the answer.

Turns on one conversation are serialised by a lease on the conversation row
(`turn_lock_until`), so history never interleaves, across processes, without holding a
database connection while the model is generating.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from langchain_core.callbacks import BaseCallbackHandler
from sqlalchemy import select, update

from advocata_chat.conversations import owned
from advocata_chat.errors import Conflict, ModelError, ModelUnavailable
from advocata_chat.history import PostgresChatHistory, preview
from advocata_chat.llm import UsageTracker, model_name
from advocata_chat.models import (
    Conversation,
    ConversationStatus,
    Message,
    MessageStatus,
    Role,
    utcnow,
)
from advocata_chat.runtime import Runtime
from advocata_chat.tokens import count_tokens
from chains.chat import build_chat_chain


class ConversationBusy(Conflict):
    code = "conversation_busy"


class NothingToAnswer(Conflict):
    code = "nothing_to_answer"


class ConversationNotActive(Conflict):
    code = "conversation_not_active"


@dataclass
class TurnResult:
    user_message: Message
    answer: Message


def _lease(rt: Runtime) -> timedelta:
    s = rt.settings
    return timedelta(seconds=s.openai_timeout_seconds * (s.openai_max_retries + 1) + 30)


async def _begin(
    rt: Runtime, *, user_id: uuid.UUID, conversation_id: uuid.UUID, content: str | None
) -> Message:
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
                conv.turn_lock_until = now + _lease(rt)
                if content is None:
                    last = await s.scalar(
                        select(Message)
                        .where(Message.conversation_id == conv.id)
                        .order_by(Message.seq.desc())
                        .limit(1)
                    )
                    if last is None or last.role != Role.user:
                        raise NothingToAnswer("There is no unanswered user message to reply to")
                    return last
                msg = Message(
                    conversation_id=conv.id, role=Role.user, content=content, created_at=now
                )
                s.add(msg)
                conv.messages_count += 1
                conv.last_message_at = conv.updated_at = now
                conv.last_message_preview = preview(content)
                await s.flush()
                return msg
        if loop.time() >= deadline:
            raise ConversationBusy(
                "Another answer is still being generated in this conversation; retry shortly"
            )
        await asyncio.sleep(0.05)


async def _release(rt: Runtime, conversation_id: uuid.UUID) -> None:
    async with rt.sessions.begin() as s:
        await s.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(turn_lock_until=None)
        )


async def _store_answer(
    rt: Runtime,
    *,
    conversation_id: uuid.UUID,
    text: str,
    status: MessageStatus,
    tracker: UsageTracker,
) -> Message:
    completion = tracker.completion_tokens
    if status != MessageStatus.complete:
        completion = count_tokens(text)  # the provider never reported usage for a broken run
    total = tracker.prompt_tokens + completion
    now = utcnow()
    msg = Message(
        conversation_id=conversation_id,
        role=Role.assistant,
        content=text,
        status=status,
        token_count=total,
        prompt_tokens=tracker.prompt_tokens,
        completion_tokens=completion,
        model=tracker.model or model_name(rt.llm),
        referenced_documents=[],
        citations=[],
        created_at=now,
    )
    async with rt.sessions.begin() as s:
        s.add(msg)
        await s.execute(
            update(Conversation)
            .where(Conversation.id == conversation_id)
            .values(
                total_tokens=Conversation.total_tokens + total,
                messages_count=Conversation.messages_count + 1,
                last_message_at=now,
                updated_at=now,
                last_message_preview=preview(text),
                turn_lock_until=None,
            )
        )
    return msg


def model_failure(
    exc: BaseException,
    *,
    conversation_id: uuid.UUID,
    user_message_id: uuid.UUID,
    partial: bool = False,
) -> ModelError:
    """Translate a provider exception into the error the client sees."""
    import openai

    detail = {
        "user_message_id": str(user_message_id),
        "retry": f"POST /api/v1/chat/conversations/{conversation_id}/reply",
    }
    if partial:
        return ModelError(
            "The model's answer broke off. Your message and the partial answer are saved.",
            detail=detail,
        )
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return ModelUnavailable(
            "The language model could not be reached. Your message is saved; retry later.",
            detail=detail,
        )
    if isinstance(exc, openai.RateLimitError):
        return ModelUnavailable(
            "The language model provider is rate limiting. Your message is saved; retry later.",
            detail=detail,
        )
    if isinstance(exc, openai.APIStatusError):
        return ModelError(
            f"The language model returned an error ({exc.status_code}). Your message is saved.",
            detail=detail,
        )
    return ModelError("The language model failed. Your message is saved.", detail=detail)


async def run_turn(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    content: str | None,
    use_rag: bool = True,
    callbacks: Sequence[BaseCallbackHandler] = (),
    on_user_message: Callable[[Message], Awaitable[None]] | None = None,
) -> TurnResult:
    """Answer `content` (or, when None, the pending last user message) in the conversation."""
    user_msg = await _begin(rt, user_id=user_id, conversation_id=conversation_id, content=content)
    released = False
    try:
        if on_user_message:
            await on_user_message(user_msg)
        history = PostgresChatHistory(
            rt.sessions,
            conversation_id,
            max_messages=rt.settings.history_max_messages,
            max_tokens=rt.settings.history_max_tokens,
            before_seq=user_msg.seq,
        )
        chain = build_chat_chain(llm=rt.llm, prompt=rt.prompts["chat"].template)
        inputs = {"history": await history.aget_messages(), "question": user_msg.content}
        tracker = UsageTracker()
        parts: list[str] = []
        try:
            async for chunk in chain.astream(inputs, config={"callbacks": [tracker, *callbacks]}):
                parts.append(chunk.text)
        except Exception as exc:
            if parts:  # keep what was generated, marked as failed
                await _store_answer(
                    rt,
                    conversation_id=conversation_id,
                    text="".join(parts),
                    status=MessageStatus.failed,
                    tracker=tracker,
                )
                released = True
            raise model_failure(
                exc,
                conversation_id=conversation_id,
                user_message_id=user_msg.id,
                partial=bool(parts),
            ) from exc
        answer = await _store_answer(
            rt,
            conversation_id=conversation_id,
            text="".join(parts),
            status=MessageStatus.complete,
            tracker=tracker,
        )
        released = True
        return TurnResult(user_message=user_msg, answer=answer)
    finally:
        if not released:
            await _release(rt, conversation_id)
