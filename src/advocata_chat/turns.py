"""One chat turn: take the conversation's turn (lease.py), run the chain, store the answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.callbacks import BaseCallbackHandler
from sqlalchemy import update

from advocata_chat import attachments as media
from advocata_chat import limits
from advocata_chat.citations import extract_citations, unknown_citations
from advocata_chat.documents import has_ready_documents
from advocata_chat.errors import (
    DatabaseUnavailable,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    is_database_down,
)
from advocata_chat.frames import Emit, TokenEmitter, final_frame, message_json, public_source
from advocata_chat.history import PostgresChatHistory, preview
from advocata_chat.lease import TurnStart, begin_turn, release_soon
from advocata_chat.llm import UsageTracker, model_name
from advocata_chat.models import (
    Conversation,
    Message,
    MessageStatus,
    Role,
    utcnow,
)
from advocata_chat.retrieval import UserRetriever
from advocata_chat.runtime import Runtime
from advocata_chat.tokens import count_tokens
from chains.chat import build_chat_chain
from chains.condense import build_condense_chain
from chains.rag import build_rag_chain
from chains.title import build_title_chain


@dataclass
class TurnResult:
    user_message: Message
    answer: Message
    sources: list[dict]


def _check_deadline(loop: asyncio.AbstractEventLoop, end: float) -> None:
    # asyncio.timeout cancels the stream's task; a cancellation swallowed inside the chain or
    # the HTTP client (seen under load) would let a slow answer run on. Checking at every
    # chunk keeps the total deadline whatever happened to that cancellation.
    if loop.time() > end:
        raise TimeoutError


async def _store_answer(
    rt: Runtime,
    *,
    conversation_id: uuid.UUID,
    text: str,
    status: MessageStatus,
    tracker: UsageTracker,
    sources: list[dict],
    generation: dict,
    reservation: limits.Reservation | None = None,
) -> Message:
    citations, referenced = extract_citations(text, sources)
    if unknown := unknown_citations(text, sources):
        generation = {**generation, "unknown_citations": unknown}
    completion = tracker.completion_tokens
    if status != MessageStatus.complete and tracker.estimate:
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
        await limits.settle(s, reservation)
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


def _rag_chain(
    rt: Runtime, user_id: uuid.UUID, attached: media.Attached | None = None, search: bool = True
):
    retriever = UserRetriever(
        engine=rt.engine,
        store=rt.store,
        embeddings=rt.embeddings,
        user_id=user_id,
        params=rt.search,
    )
    llm = rt.llm
    if attached:  # issue 16: the message's attachments are sources (and images) of their own
        retriever, llm = media.wrap(rt, retriever=retriever, attached=attached, search=search)
    # The offline model cannot rewrite a question, so it searches with the question as is.
    condense = build_condense_chain(
        llm=None if rt.offline else rt.llm, prompt=rt.prompts["condense"].template
    )
    return build_rag_chain(
        llm=llm,
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
    attachments: Sequence[uuid.UUID] = (),
    voice: dict | None = None,
) -> TurnResult:
    """Answer `content` (or, when None, the pending last user message) in the conversation.

    `mode` is "send" (the default; `content=None` answers the pending message), "regenerate"
    (supersede the last answer and answer again) or "edit" (supersede message `edit_id` and
    what follows it, store `content` in its place, answer it).

    With `emit`, the turn reports its progress as WebSocket frames: `message_received`,
    `sources`, `token` (through a LangChain callback on the answer model), and the final
    `message`; a cancelled turn stores what it had as `interrupted` and reports `cancelled`.

    `attachments` (document ids) and `voice` (a spoken question's transcript, language and
    duration) are stored on the new user message (issue 16).
    """
    # Issue 16: attachments are checked (the caller's own documents) before anything else.
    fields = {"attachments": await media.resolve(rt, user_id=user_id, ids=attachments)}
    if voice is not None:
        fields["voice"] = voice
    # Limits are checked before anything is stored or the model is called. The quota holds
    # an estimate of this turn's tokens until its answer is stored (or it fails).
    await limits.hit(
        rt.sessions,
        user_id=user_id,
        action="message",
        limit=rt.settings.rate_messages_per_minute,
        window_seconds=60,
        now=rt.clock(),
    )
    # Attachments fill the context like retrieved sources do (issue 16).
    estimate = limits.turn_estimate(
        rt.settings, question=content, use_rag=use_rag or bool(attachments)
    )
    reservation = await limits.reserve(rt.sessions, rt.settings, user_id=user_id, tokens=estimate)
    try:
        start = await begin_turn(
            rt,
            user_id=user_id,
            conversation_id=conversation_id,
            content=content,
            mode=mode,
            edit_id=edit_id,
            fields=fields if attachments or voice else None,
        )
    except BaseException:
        await limits.release(rt.sessions, reservation)
        raise
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
        tracker = UsageTracker(estimate=not rt.offline)
        config = {"callbacks": [tracker, *callbacks]}
        parts: list[str] = []
        sources: list[dict] = []
        search = use_rag and await has_ready_documents(rt, user_id=user_id)
        # Issue 16: a message with attachments is answered from them (and a search, if any).
        attached = await media.for_message(rt, user_id=user_id, message=user_msg)
        rag = search or bool(attached.sources)
        generation = _generation(
            rt, start, rag=rag, prompts=["condense", "answer"] if rag else ["chat"]
        )
        store = dict(
            conversation_id=conversation_id,
            tracker=tracker,
            generation=generation,
            reservation=reservation,
        )
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
                    chain = _rag_chain(rt, user_id, attached, search)
                    stream = chain.astream(inputs, config=config)
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
                        _check_deadline(loop, end)
                else:
                    if emit:
                        await emit({"type": "sources", "sources": []})
                    chain = build_chat_chain(llm=rt.llm, prompt=rt.prompts["chat"].template)
                    async for chunk in chain.astream(inputs, config=config):
                        parts.append(chunk.text)
                        if not first_seen and chunk.text:
                            first_seen = True
                            deadline.reschedule(end)
                        _check_deadline(loop, end)
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
        if not released:  # no answer stored: nothing settled the reservation either
            await release_soon(rt, conversation_id, start.lease_until)
            await limits.release(rt.sessions, reservation)
