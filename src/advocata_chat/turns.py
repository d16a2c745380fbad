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

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from sqlalchemy import select, update

from advocata_chat import limits
from advocata_chat.citations import extract_citations
from advocata_chat.conversations import owned
from advocata_chat.documents import has_ready_documents
from advocata_chat.errors import (
    Conflict,
    DatabaseUnavailable,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    NotFound,
    is_database_down,
)
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
from advocata_chat.retrieval import UserRetriever
from advocata_chat.runtime import Runtime
from advocata_chat.schemas import MessageOut
from advocata_chat.tokens import count_tokens
from chains.chat import build_chat_chain
from chains.condense import build_condense_chain
from chains.rag import build_rag_chain
from chains.title import build_title_chain


class ConversationBusy(Conflict):
    code = "conversation_busy"


class NothingToAnswer(Conflict):
    code = "nothing_to_answer"


class ConversationNotActive(Conflict):
    code = "conversation_not_active"


class CannotEdit(Conflict):
    code = "cannot_edit"


class MessageNotFound(NotFound):
    pass


@dataclass
class TurnResult:
    user_message: Message
    answer: Message
    sources: list[dict]


Emit = Callable[[dict], Awaitable[None]]


class TokenEmitter(AsyncCallbackHandler):
    """Sends each new token of the answer model as a `token` frame.

    Only runs tagged `answer` count: the condense step's tokens are not the answer.
    """

    # Awaited in place: otherwise LangChain wraps every token's callback in its own task,
    # which was the largest per-token cost in bench/fanout.py.
    run_inline = True

    def __init__(self, emit: Emit) -> None:
        self.emit = emit

    async def on_llm_new_token(self, token: str, *, tags: list[str] | None = None, **kw) -> None:
        if token and tags and "answer" in tags:
            await self.emit({"type": "token", "delta": token})


def message_json(msg: Message) -> dict:
    return MessageOut.model_validate(msg).model_dump(mode="json")


def final_frame(msg: Message) -> dict:
    """The seed's final `message` frame."""
    return {
        "type": "message",
        "message": message_json(msg),
        "conversation": getattr(msg, "conversation_totals", None),
    }


def public_source(source: dict) -> dict:
    """What clients see of a retrieved chunk (the `sources` frame, the search endpoint)."""
    keys = (
        "n",
        "document_id",
        "chunk_id",
        "title",
        "page",
        "start",
        "end",
        "score",
        "similarity",
        "bm25",
        "found_by",
    )
    return {k: source.get(k) for k in keys} | {"content": source.get("content", "")}


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
    lease_until: object = None  # this turn's lease, released only if still ours


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
    s, conv: Conversation, *, content: str | None, mode: str, edit_id: uuid.UUID | None, now
) -> Message:
    """Find or store the user message this turn answers."""
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
    )
    s.add(msg)
    conv.messages_count += 1
    conv.last_message_at = conv.updated_at = now
    conv.last_message_preview = preview(content)
    await s.flush()
    return msg


async def _begin(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    content: str | None,
    mode: str = "send",
    edit_id: uuid.UUID | None = None,
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
                msg = await _prepare(s, conv, content=content, mode=mode, edit_id=edit_id, now=now)
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


async def _release(rt: Runtime, conversation_id: uuid.UUID, lease_until=None) -> None:
    where = [Conversation.id == conversation_id]
    if lease_until is not None:
        where.append(Conversation.turn_lock_until == lease_until)
    async with rt.sessions.begin() as s:
        await s.execute(update(Conversation).where(*where).values(turn_lock_until=None))


RELEASE_RETRY_DELAYS = (0.5,) * 20 + (2,) * 25  # ~60 s in all, far below a lease


async def _release_soon(rt: Runtime, conversation_id: uuid.UUID, lease_until) -> None:
    """Release the lease; if the database is down, keep trying in the background once it
    is back, so a turn cut off by an outage does not block the conversation for a lease."""
    try:
        await _release(rt, conversation_id, lease_until)
        return
    except Exception as exc:
        if not is_database_down(exc):
            raise

    async def retry() -> None:
        for delay in RELEASE_RETRY_DELAYS:
            await asyncio.sleep(delay)
            try:
                await _release(rt, conversation_id, lease_until)
                return
            except Exception as exc:
                if not is_database_down(exc):
                    raise

    task = asyncio.get_running_loop().create_task(retry())
    rt.tasks.add(task)
    task.add_done_callback(rt.tasks.discard)


async def _store_answer(
    rt: Runtime,
    *,
    conversation_id: uuid.UUID,
    text: str,
    status: MessageStatus,
    tracker: UsageTracker,
    sources: list[dict],
    generation: dict,
) -> Message:
    citations, referenced = extract_citations(text, sources)
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
        referenced_documents=referenced,
        citations=citations,
        generation=generation,
        created_at=now,
    )
    async with rt.sessions.begin() as s:
        s.add(msg)
        totals = await s.execute(
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
            .returning(Conversation.total_tokens, Conversation.messages_count)
        )
        tokens, count = totals.one()
    msg.conversation_totals = {"total_tokens": tokens, "messages_count": count}
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
    if isinstance(exc, ModelError):
        exc.detail = {**(exc.detail or {}), **detail}
        return exc
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


def _rag_chain(rt: Runtime, user_id: uuid.UUID):
    retriever = UserRetriever(
        engine=rt.engine,
        store=rt.store,
        embeddings=rt.embeddings,
        user_id=user_id,
        params=rt.search,
    )
    # The offline model cannot rewrite a question, so it searches with the question as is.
    condense = build_condense_chain(
        llm=None if rt.offline else rt.llm, prompt=rt.prompts["condense"].template
    )
    return build_rag_chain(
        llm=rt.llm,
        condense=condense,
        retriever=retriever,
        prompt=rt.prompts["answer"].template,
        max_context_tokens=rt.settings.rag_max_context_tokens,
    )


def _instructions(rt: Runtime, start: TurnStart) -> list:
    """The template's addition and the user's own instruction, framed as a system message
    that comes after the base legal prompt (which they cannot replace)."""
    parts = []
    template = rt.templates.get(start.template_id or "")
    if template is not None:
        parts.append(template.system_addition)
    if start.instructions:
        parts.append(start.instructions)
    if not parts:
        return []
    return rt.prompts["instructions"].template.format_messages(instructions="\n\n".join(parts))


def _generation(rt: Runtime, start: TurnStart, *, rag: bool, prompts: list[str]) -> dict:
    """What produced an answer, so feedback can be traced to a prompt version."""
    names = ["system", *prompts] + (["instructions"] if _instructions(rt, start) else [])
    return {
        "prompts": {n: rt.prompts[n].sha256[:16] for n in names},
        "model": model_name(rt.llm),
        "template_id": start.template_id,
        "custom_instructions": bool(start.instructions),
        "retrieval": {
            "embedding_model": rt.embedding_model,
            "top_k": rt.search.top_k,
            "candidates": rt.search.candidates,
            "min_similarity": rt.search.min_similarity,
            "rrf_k": rt.search.rrf_k,
            "vector_weight": rt.search.vector_weight,
            "text_weight": rt.search.text_weight,
        }
        if rag
        else None,
    }


async def _title(rt: Runtime, conversation_id: uuid.UUID, question: str, answer: str) -> str | None:
    chain = build_title_chain(
        llm=None if rt.offline else rt.llm, prompt=rt.prompts["title"].template
    )
    try:
        title = (await chain.ainvoke({"question": question, "answer": answer})).strip()
    except Exception:  # a title is a nicety; the answer is already stored
        return None
    title = title.strip("«»\"' .")[: rt.settings.max_title_chars] or None
    if title:
        try:
            async with rt.sessions.begin() as s:
                await s.execute(
                    update(Conversation)
                    .where(Conversation.id == conversation_id, Conversation.title.is_(None))
                    .values(title=title)
                )
        except Exception as exc:  # the answer is stored; an outage now only costs the title
            if not is_database_down(exc):
                raise
            return None
    return title


async def run_turn(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    content: str | None,
    use_rag: bool = True,
    callbacks: Sequence[BaseCallbackHandler] = (),
    emit: Emit | None = None,
    mode: str = "send",
    edit_id: uuid.UUID | None = None,
) -> TurnResult:
    """Answer `content` (or, when None, the pending last user message) in the conversation.

    `mode` is "send" (the default; `content=None` answers the pending message), "regenerate"
    (supersede the last answer and answer again) or "edit" (supersede message `edit_id` and
    what follows it, store `content` in its place, answer it).

    With `emit`, the turn reports its progress as WebSocket frames: `message_received`,
    `sources`, `token` (through a LangChain callback on the answer model), and the final
    `message`; a cancelled turn stores what it had as `interrupted` and reports `cancelled`.
    """
    # Limits are checked before anything is stored or the model is called.
    await limits.hit(
        rt.sessions,
        user_id=user_id,
        action="message",
        limit=rt.settings.rate_messages_per_minute,
        window_seconds=60,
    )
    await limits.check_quota(rt.sessions, rt.settings, user_id=user_id)
    start = await _begin(
        rt,
        user_id=user_id,
        conversation_id=conversation_id,
        content=content,
        mode=mode,
        edit_id=edit_id,
    )
    user_msg = start.user_message
    released = False
    if emit:
        callbacks = [*callbacks, TokenEmitter(emit)]
    try:
        if emit:
            await emit({"type": "message_received", "message": message_json(user_msg)})
        history = PostgresChatHistory(
            rt.sessions,
            conversation_id,
            max_messages=rt.settings.history_max_messages,
            max_tokens=rt.settings.history_max_tokens,
            before_seq=user_msg.seq,
        )
        inputs = {
            "history": await history.aget_messages(),
            "question": user_msg.content,
            "instructions": _instructions(rt, start),
        }
        tracker = UsageTracker()
        config = {"callbacks": [tracker, *callbacks]}
        parts: list[str] = []
        sources: list[dict] = []
        rag = use_rag and await has_ready_documents(rt, user_id=user_id)
        generation = _generation(
            rt, start, rag=rag, prompts=["condense", "answer"] if rag else ["chat"]
        )
        store = dict(conversation_id=conversation_id, tracker=tracker, generation=generation)
        loop = asyncio.get_running_loop()
        first_budget = min(
            rt.settings.openai_first_token_timeout_seconds, rt.settings.openai_total_timeout_seconds
        )
        end = loop.time() + rt.settings.openai_total_timeout_seconds
        first_seen = False
        try:
            # A hung provider must not hold the turn forever: one deadline for the first
            # token, another for the whole answer. asyncio.timeout tells its own
            # cancellation apart from a user's cancel.
            async with asyncio.timeout(first_budget) as deadline:
                if rag:
                    stream = _rag_chain(rt, user_id).astream(inputs, config=config)
                    async for chunk in stream:
                        if "packed" in chunk:
                            sources = chunk["packed"]["sources"]
                            if emit:
                                await emit(
                                    {
                                        "type": "sources",
                                        "sources": [public_source(x) for x in sources],
                                    }
                                )
                        if "answer" in chunk:
                            parts.append(chunk["answer"].text)
                        if not first_seen and "".join(parts):
                            first_seen = True
                            deadline.reschedule(end)
                else:
                    if emit:
                        await emit({"type": "sources", "sources": []})
                    chain = build_chat_chain(llm=rt.llm, prompt=rt.prompts["chat"].template)
                    async for chunk in chain.astream(inputs, config=config):
                        parts.append(chunk.text)
                        if not first_seen and chunk.text:
                            first_seen = True
                            deadline.reschedule(end)
        except TimeoutError:
            budget = rt.settings.openai_total_timeout_seconds if first_seen else first_budget
            what = "the whole answer" if first_seen else "the first token"
            timeout = ModelTimeout(f"The language model took longer than {budget:g} s for {what}.")
            if parts:
                await _store_answer(
                    rt, text="".join(parts), status=MessageStatus.failed, sources=sources, **store
                )
                released = True
            raise model_failure(
                timeout, conversation_id=conversation_id, user_message_id=user_msg.id
            ) from None
        except asyncio.CancelledError:
            # The user pressed stop: keep what was generated, marked as interrupted.
            stored = None
            if parts:
                stored = await _store_answer(
                    rt,
                    text="".join(parts),
                    status=MessageStatus.interrupted,
                    sources=sources,
                    **store,
                )
                released = True
            if emit:
                if stored is not None:
                    await emit(final_frame(stored))
                await emit({"type": "cancelled", "message_id": stored and str(stored.id)})
            raise
        except Exception as exc:
            if is_database_down(exc):  # retrieval lost the database: not the model's fault
                raise
            if parts:  # keep what was generated, marked as failed
                await _store_answer(
                    rt, text="".join(parts), status=MessageStatus.failed, sources=sources, **store
                )
                released = True
            raise model_failure(
                exc,
                conversation_id=conversation_id,
                user_message_id=user_msg.id,
                partial=bool(parts),
            ) from exc
        answer = await _store_answer(
            rt, text="".join(parts), status=MessageStatus.complete, sources=sources, **store
        )
        released = True
        if emit:
            await emit(final_frame(answer))
        if start.first_answer and start.title_auto:
            title = await _title(rt, conversation_id, user_msg.content, answer.content)
            if title and emit:
                await emit({"type": "title", "title": title})
        return TurnResult(user_message=user_msg, answer=answer, sources=sources)
    except Exception as exc:
        if is_database_down(exc):
            # The user message is stored: say so, so that the client asks for the answer
            # instead of sending the message again.
            raise DatabaseUnavailable(
                conversation_id=conversation_id, user_message_id=user_msg.id
            ) from exc
        raise
    finally:
        if not released:
            await _release_soon(rt, conversation_id, start.lease_until)
