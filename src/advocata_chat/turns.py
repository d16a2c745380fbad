"""One chat turn, read top to bottom: the request, the lease, the answer, its storing.

    request = TurnRequest.send(user_id=..., conversation_id=..., content="...")
    result = await run(rt, request)            # REST: the stored answer
    start(rt, hub, request)                    # WebSocket/SSE: a task streaming frames

1. Admission: the per-user rate limit and token quota (limits.py) before anything is stored.
2. The lease (`turn_lease`): one transaction takes the conversation's turn, stores or finds
   the user message (messages.prepare) and reads the history window. Leaving the block
   without a stored answer releases the lease and the quota reservation.
3. The answer: chains/answer.py streams the sources, then the answer; the `Answer`
   accumulator holds its text and the two deadlines (first token, whole answer).
4. Storing: the answer and the conversation's counters in one transaction (messages.add),
   which also ends the lease. A broken answer is kept as `interrupted` (the user stopped
   it) or `failed` in one place, `_broken`.
5. The title, for a new conversation, as a follow-up task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from sqlalchemy import func, or_, select, update

from advocata_chat import attachments as media
from advocata_chat import limits, voice
from advocata_chat import messages as writer
from advocata_chat.citations import extract_citations, unknown_citations
from advocata_chat.conversations import owned
from advocata_chat.documents import has_ready_documents
from advocata_chat.errors import (
    Conflict,
    DatabaseUnavailable,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    is_database_down,
)
from advocata_chat.frames import (
    Cancelled,
    Frame,
    MessageReceived,
    Sources,
    Title,
    Token,
    failures_told,
    final_frame,
    public_source,
)
from advocata_chat.history import window
from advocata_chat.hub import Hub
from advocata_chat.llm import UsageTracker, model_name
from advocata_chat.messages import TurnKind
from advocata_chat.models import (
    Conversation,
    ConversationStatus,
    Message,
    MessageStatus,
    Role,
    utcnow,
)
from advocata_chat.retries import database_retries
from advocata_chat.retrieval import UserRetriever
from advocata_chat.runtime import Runtime
from advocata_chat.schemas import MessageOut
from advocata_chat.tokens import count_tokens
from chains.answer import build_answer_chain
from chains.chat import build_chat_chain
from chains.condense import build_condense_chain
from chains.rag import build_rag_chain
from chains.title import build_title_chain

log = logging.getLogger(__name__)
Emit = Callable[[Frame], None]


def _quiet(frame: Frame) -> None:
    """The emit of a REST turn: nobody listens to its frames."""


class ConversationBusy(Conflict):
    """Another answer in this conversation was still being generated after
    `TURN_WAIT_SECONDS`."""

    code = "conversation_busy"
    example = "Another answer is still being generated in this conversation; retry shortly"


class ConversationNotActive(Conflict):
    """The conversation is archived or deleted; set its status to `active` to continue it."""

    code = "conversation_not_active"
    example = "Conversation is archived; set its status to active to continue it"


# -- 0. the request -----------------------------------------------------------------------


@dataclass(frozen=True)
class TurnRequest:
    """What a client asked for. Build one with `send`, `reply`, `regenerate` or `edit`."""

    user_id: uuid.UUID
    conversation_id: uuid.UUID
    kind: TurnKind
    content: str | None = None  # send and edit: the (checked) user message
    edit_id: uuid.UUID | None = None  # edit: the message it replaces
    use_rag: bool = True
    attachments: tuple[uuid.UUID, ...] = ()  # send: uploaded documents (photos, scans)
    voice: dict | None = None  # send: the spoken question's transcript, language, duration
    voice_upload: uuid.UUID | None = None  # send: the uploaded recording it used up (voice.py)

    @classmethod
    def send(
        cls,
        *,
        user_id,
        conversation_id,
        content: str,
        use_rag: bool = True,
        attachments: Sequence[uuid.UUID] = (),
        voice: dict | None = None,
        voice_upload: uuid.UUID | None = None,
    ):
        """Store a new user message and answer it."""
        return cls(
            user_id,
            conversation_id,
            "send",
            content=content,
            use_rag=use_rag,
            attachments=tuple(attachments),
            voice=voice,
            voice_upload=voice_upload,
        )

    @classmethod
    def reply(cls, *, user_id, conversation_id, use_rag: bool = True):
        """Answer the pending (last, unanswered) user message."""
        return cls(user_id, conversation_id, "reply", use_rag=use_rag)

    @classmethod
    def regenerate(cls, *, user_id, conversation_id, use_rag: bool = True):
        """Supersede the last answer and answer its question again."""
        return cls(user_id, conversation_id, "regenerate", use_rag=use_rag)

    @classmethod
    def edit(cls, *, user_id, conversation_id, message_id, content: str, use_rag: bool = True):
        """Supersede message `message_id` and what follows; answer `content` in its place."""
        return cls(user_id, conversation_id, "edit", content, message_id, use_rag)


@dataclass
class TurnResult:
    user_message: Message
    answer: Message
    sources: list[dict]
    title: asyncio.Task | None = None  # the follow-up naming a new conversation


# -- 1-2. admission and the lease ---------------------------------------------------------


@dataclass
class Turn:
    """A turn that holds its conversation's lease: what the answer needs."""

    request: TurnRequest
    user_message: Message
    history: list[BaseMessage]
    instructions: list[BaseMessage]  # the template's and the user's, rendered once
    template_id: str | None
    custom_instructions: bool  # the user set an instruction of their own
    title_due: bool  # the conversation waits for its first answer to be named
    lease_until: datetime
    reservation: limits.Reservation | None
    answer_id: uuid.UUID  # the id the answer will be stored with
    stored: bool = False  # an answer was stored, which ended the lease and the reservation


# What ends a lease: the conversation row no longer names a turn or an answer in progress.
NO_LEASE = {
    "turn_lock_until": None,
    "answer_id": None,
    "answer_text": None,
    "answer_sources": None,
}


def _lease_length(rt: Runtime) -> timedelta:
    s = rt.settings
    return timedelta(seconds=s.openai_timeout_seconds * (s.openai_max_retries + 1) + 30)


async def _admit(rt: Runtime, req: TurnRequest) -> limits.Reservation | None:
    """The rate limit, then the quota: it holds an estimate of this turn's tokens until the
    answer is stored (or the turn ends without one)."""
    await limits.hit(
        rt.sessions,
        user_id=req.user_id,
        action="message",
        limit=rt.settings.rate_messages_per_minute,
        window_seconds=60,
        now=rt.clock(),
    )
    # Attachments fill the context like retrieved sources do.
    use_context = req.use_rag or bool(req.attachments)
    estimate = limits.turn_estimate(rt.settings, question=req.content, use_rag=use_context)
    return await limits.reserve(rt.sessions, rt.settings, user_id=req.user_id, tokens=estimate)


async def _start(
    rt: Runtime, s, conv: Conversation, req: TurnRequest, now, fields: dict | None
) -> Turn:
    """Inside the lease's transaction: take the lease, store or find the user message (one
    UPDATE of the conversation row for both), read the history before it."""
    lease_until, answer_id = now + _lease_length(rt), uuid.uuid4()
    if req.voice_upload is not None:  # used up with the message stored, or not at all
        await voice.consume(s, user_id=req.user_id, upload_id=req.voice_upload)
    msg = await writer.prepare(
        s,
        conv.id,
        kind=req.kind,
        content=req.content,
        edit_id=req.edit_id,
        now=now,
        fields=fields,
        turn_lock_until=lease_until,
        answer_id=answer_id,  # a client that reconnects can resume it (resume.py)
        answer_text=None,
        answer_sources=None,
    )
    title_due = conv.title_auto and conv.title is None
    if title_due:  # only a conversation that was never answered gets a title
        answered = select(Message.id).where(
            Message.conversation_id == conv.id, Message.role == Role.assistant
        )
        title_due = await s.scalar(answered.limit(1)) is None
    history = await window(
        s,
        conv.id,
        max_messages=rt.settings.history_max_messages,
        max_tokens=rt.settings.history_max_tokens,
        before_seq=msg.seq,
    )
    return Turn(
        request=req,
        user_message=msg,
        history=history,
        instructions=_instructions(rt, conv.template_id, conv.instructions),
        template_id=conv.template_id,
        custom_instructions=bool(conv.instructions),
        title_due=title_due,
        lease_until=lease_until,
        reservation=None,
        answer_id=answer_id,
    )


async def _take(rt: Runtime, req: TurnRequest, fields: dict | None) -> Turn:
    """Wait (up to TURN_WAIT_SECONDS) for the conversation's lease and take it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + rt.settings.turn_wait_seconds
    while True:
        async with rt.sessions.begin() as s:
            conv = await owned(
                s, user_id=req.user_id, conversation_id=req.conversation_id, for_update=True
            )
            if conv.status != ConversationStatus.active:
                raise ConversationNotActive(
                    f"Conversation is {conv.status}; set its status to active to continue it"
                )
            now = utcnow()
            if conv.turn_lock_until is None or conv.turn_lock_until <= now:
                return await _start(rt, s, conv, req, now, fields)
        if loop.time() >= deadline:
            raise ConversationBusy(
                "Another answer is still being generated in this conversation; retry shortly"
            )
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def turn_lease(rt: Runtime, req: TurnRequest) -> AsyncIterator[Turn]:
    """Admit the turn and hold the conversation's lease for the block. The lease is a
    timestamp on the conversation row (`turn_lock_until`): turns on one conversation never
    interleave, across processes, and no database connection is held while the model
    generates. Storing the answer ends it; otherwise leaving the block does."""
    fields = await _new_message_fields(rt, req)
    reservation = await _admit(rt, req)
    try:
        turn = await _take(rt, req, fields)
    except BaseException:
        await limits.release(rt.sessions, reservation)
        raise
    turn.reservation = reservation
    try:
        yield turn
    except Exception as exc:
        if is_database_down(exc):
            # The user message is stored: say so, so that the client asks for the answer
            # instead of sending the message again.
            raise DatabaseUnavailable(
                conversation_id=req.conversation_id, user_message_id=turn.user_message.id
            ) from exc
        raise
    finally:
        if not turn.stored:
            await _release_soon(rt, turn)
            await limits.release(rt.sessions, reservation)


async def _new_message_fields(rt: Runtime, req: TurnRequest) -> dict | None:
    """The attachments (checked: the caller's own documents) and voice a new user message
    is stored with, before anything else is."""
    fields: dict = {}
    if req.attachments:
        fields["attachments"] = await media.resolve(rt, user_id=req.user_id, ids=req.attachments)
    if req.voice is not None:
        fields["voice"] = req.voice
    return fields or None


async def _release(rt: Runtime, turn: Turn) -> None:
    # Never release a lease a later turn has taken since.
    async with rt.sessions.begin() as s:
        await s.execute(
            update(Conversation)
            .where(
                Conversation.id == turn.request.conversation_id,
                Conversation.turn_lock_until == turn.lease_until,
            )
            .values(**NO_LEASE)
        )


async def _release_soon(rt: Runtime, turn: Turn) -> None:
    """Release the lease; if the database is down, keep trying in the background (about a
    minute, far below a lease), so an outage does not block the conversation for a lease."""
    try:
        await _release(rt, turn)
    except Exception as exc:
        if not is_database_down(exc):
            raise

        async def retry() -> None:
            async for attempt in database_retries("releasing a turn", seconds=60):
                with attempt:
                    await _release(rt, turn)

        rt.spawn(retry())


# -- 3. the answer ------------------------------------------------------------------------


class Answer:
    """The answer as it streams: its text so far, its sources, and its two deadlines."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        self.loop = asyncio.get_running_loop()
        self.total_budget = s.openai_total_timeout_seconds
        self.first_budget = min(s.openai_first_token_timeout_seconds, self.total_budget)
        self.end = self.loop.time() + self.total_budget
        self.parts: list[str] = []
        self.length = 0
        self.sources: list[dict] = []
        # What clients see of them: the live `sources` frame and a resumed stream's, built once.
        self.public_sources: list[dict] = []
        self.deadline: asyncio.Timeout | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, delta: str) -> int:
        """Append `delta`; return where it starts in the answer."""
        offset = self.length
        self.parts.append(delta)
        self.length += len(delta)
        if offset == 0 and self.deadline is not None:
            self.deadline.reschedule(self.end)  # the first token came: the whole answer's turn
        return offset

    def check(self) -> None:
        # A user's cancel and asyncio.timeout both cancel the stream's task; a cancellation
        # swallowed inside the chain or the HTTP client (seen under load: a cancelled
        # answer streamed on to its end) would let the answer run on. Checked at every
        # chunk: a request still pending shows in cancelling() and is raised here
        # (asyncio.timeout turns its own into TimeoutError), and the total deadline holds.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        if self.loop.time() > self.end:
            raise TimeoutError

    def timed_out(self) -> ModelTimeout:
        budget, what = (
            (self.total_budget, "the whole answer")
            if self.length
            else (
                self.first_budget,
                "the first token",
            )
        )
        return ModelTimeout(f"The language model took longer than {budget:g} s for {what}.")


class Partial:
    """Writes the answer's text so far and its sources to the conversation row when asked
    (a client is resuming the stream, maybe from another process: resume.py)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.turn: Turn | None = None
        self.answer: Answer | None = None

    def save_soon(self) -> None:
        answer = self.answer
        if self.turn is not None and answer is not None and (answer.length or answer.sources):
            self.rt.spawn(self._save(self.turn, answer.text, answer.public_sources or None))

    async def _save(self, turn: Turn, text: str, sources: list[dict] | None) -> None:
        # Only while the answer is in progress, and only what is new: a longer text (two
        # saves may finish out of order), or the sources not written yet.
        fresh = func.coalesce(func.length(Conversation.answer_text), 0) < len(text)
        if sources:
            fresh = or_(fresh, Conversation.answer_sources.is_(None))
        try:
            async with self.rt.sessions.begin() as s:
                await s.execute(
                    update(Conversation)
                    .where(
                        Conversation.id == turn.request.conversation_id,
                        Conversation.answer_id == turn.answer_id,
                        fresh,
                    )
                    .values(answer_text=text, answer_sources=sources)
                )
        except Exception as exc:  # the resuming client asks again
            if not is_database_down(exc):
                raise


def _instructions(rt: Runtime, template_id: str | None, own: str | None) -> list[BaseMessage]:
    """The template's addition and the user's own instruction, framed as a system message
    that comes after the base legal prompt (which they cannot replace)."""
    template = rt.templates.get(template_id or "")
    parts = [p for p in (template and template.system_addition, own) if p]
    if not parts:
        return []
    return rt.prompts["instructions"].template.format_messages(instructions="\n\n".join(parts))


def _chain(rt: Runtime, user_id: uuid.UUID, attached: media.Attached, *, search: bool):
    retriever = UserRetriever(
        engine=rt.engine,
        store=rt.store,
        embeddings=rt.embeddings,
        user_id=user_id,
        params=rt.search,
    )
    llm = rt.llm
    if attached:  # the message's attachments are sources (and images) of their own
        retriever, llm = media.wrap(rt, retriever=retriever, attached=attached, search=search)
    # The offline model cannot rewrite a question, so it searches with the question as is.
    condense = build_condense_chain(
        llm=None if rt.offline else rt.llm, prompt=rt.prompts["condense"].template
    )
    rag = build_rag_chain(
        llm=llm,
        condense=condense,
        retriever=retriever,
        prompt=rt.prompts["answer"].template,
        max_context_tokens=rt.settings.rag_max_context_tokens,
    )
    chat = build_chat_chain(llm=rt.llm, prompt=rt.prompts["chat"].template)
    return build_answer_chain(rag=rag, chat=chat)


async def _generate(
    chain: Runnable, turn: Turn, answer: Answer, emit: Emit, config: dict, *, rag: bool
) -> None:
    """Stream the answer into `answer`, emitting `sources` and `token` frames."""
    inputs = {
        "use_rag": rag,
        "history": turn.history,
        "question": turn.user_message.content,
        "instructions": turn.instructions,
    }
    # A hung provider must not hold the turn forever: one deadline for the first token,
    # another for the whole answer. asyncio.timeout tells its own cancellation apart from
    # a user's cancel.
    async with asyncio.timeout(answer.first_budget) as answer.deadline:
        async for chunk in chain.astream(inputs, config=config):
            if "packed" in chunk:
                answer.sources = chunk["packed"]["sources"]
                answer.public_sources = [public_source(x) for x in answer.sources]
                emit(Sources(sources=answer.public_sources))
            if "answer" in chunk and (delta := chunk["answer"].text):
                emit(Token(delta=delta, offset=answer.add(delta)))
            answer.check()


def _generation(rt: Runtime, turn: Turn, *, rag: bool) -> dict:
    """What produced an answer, so feedback can be traced to a prompt version."""
    names = ["system", *(["condense", "answer"] if rag else ["chat"])]
    names += ["instructions"] if turn.instructions else []
    return {
        "prompts": {n: rt.prompts[n].sha256[:16] for n in names},
        "model": model_name(rt.llm),
        "template_id": turn.template_id,
        "custom_instructions": turn.custom_instructions,
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


# -- 4. storing ---------------------------------------------------------------------------


@dataclass
class _Run:
    """One run of the answer chain: the accumulator and what its storing needs."""

    answer: Answer
    tracker: UsageTracker
    generation: dict


async def _store(rt: Runtime, turn: Turn, run: _Run, status: MessageStatus) -> Message:
    """Store the answer and its counters; this ends the lease and settles the quota."""
    text, sources = run.answer.text, run.answer.sources
    generation = run.generation
    citations, referenced = extract_citations(text, sources)
    if unknown := unknown_citations(text, sources):
        generation = {**generation, "unknown_citations": unknown}
    tracker = run.tracker
    completion = tracker.completion_tokens
    if status != MessageStatus.complete and tracker.estimate:
        completion = count_tokens(text)  # the provider never reported usage for a broken run
    total = tracker.prompt_tokens + completion
    msg = Message(
        id=turn.answer_id,
        conversation_id=turn.request.conversation_id,
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
        created_at=utcnow(),
    )
    async with rt.sessions.begin() as s:
        await limits.settle(s, turn.reservation)
        tokens, count = await writer.add(s, msg, tokens=total, **NO_LEASE)
    turn.stored = True
    msg.conversation_totals = {"total_tokens": tokens, "messages_count": count}
    return msg


async def _broken(rt: Runtime, turn: Turn, run: _Run, exc: BaseException, emit: Emit):
    """The one place a broken answer is kept: what was generated is stored as `interrupted`
    (the user stopped it) or `failed`. Returns the exception the turn raises."""
    cancelled = isinstance(exc, asyncio.CancelledError)
    if not isinstance(exc, Exception | asyncio.CancelledError):
        return exc
    if isinstance(exc, Exception) and is_database_down(exc):
        return exc  # retrieval lost the database: not the model's fault (see turn_lease)
    stored = None
    if run.answer.length:
        status = MessageStatus.interrupted if cancelled else MessageStatus.failed
        stored = await _store(rt, turn, run, status)
    if cancelled:
        if stored is not None:
            emit(final_frame(stored))
        emit(Cancelled(message_id=stored and stored.id))
        return exc
    timeout = isinstance(exc, TimeoutError)
    return model_failure(
        run.answer.timed_out() if timeout else exc,
        conversation_id=turn.request.conversation_id,
        user_message_id=turn.user_message.id,
        partial=stored is not None and not timeout,
    )


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


# -- 5. the title -------------------------------------------------------------------------


async def _title(rt: Runtime, turn: Turn, answer: str, emit: Emit) -> str | None:
    """Name a new conversation after its first answer. A title is a nicety: the answer is
    stored, so a failure (or an outage) now only costs the title."""
    chain = build_title_chain(
        llm=None if rt.offline else rt.llm, prompt=rt.prompts["title"].template
    )
    question = turn.user_message.content
    try:
        title = (await chain.ainvoke({"question": question, "answer": answer})).strip()
    except Exception:
        return None
    title = title.strip("«»\"' .")[: rt.settings.max_title_chars] or None
    if title is None:
        return None
    try:
        async with rt.sessions.begin() as s:
            await s.execute(
                update(Conversation)
                .where(
                    Conversation.id == turn.request.conversation_id, Conversation.title.is_(None)
                )
                .values(title=title)
            )
    except Exception as exc:
        if not is_database_down(exc):
            raise
        return None
    emit(Title(title=title))
    return title


# -- the whole turn -----------------------------------------------------------------------


async def run(
    rt: Runtime,
    req: TurnRequest,
    *,
    emit: Emit = _quiet,
    partial: Partial | None = None,
    callbacks: Sequence[BaseCallbackHandler] = (),
) -> TurnResult:
    """Answer the request. `emit` gets the turn's frames: `message_received`, `sources`,
    `token`s and the final `message` (or, when cancelled, what was kept and `cancelled`);
    errors are raised (`start` turns them into an `error` frame)."""
    async with turn_lease(rt, req) as turn:
        emit(
            MessageReceived(
                message=MessageOut.model_validate(turn.user_message), answer_id=turn.answer_id
            )
        )
        search = req.use_rag and await has_ready_documents(rt, user_id=req.user_id)
        # A message with attachments is answered from them (and a search, if any).
        attached = await media.for_message(rt, user_id=req.user_id, message=turn.user_message)
        rag = search or bool(attached.sources)
        chain = _chain(rt, req.user_id, attached, search=search)
        tracker = UsageTracker(estimate=not rt.offline)
        run_ = _Run(Answer(rt), tracker, _generation(rt, turn, rag=rag))
        if partial is not None:
            partial.turn, partial.answer = turn, run_.answer
        config = {"callbacks": [tracker, *callbacks]}
        try:
            await _generate(chain, turn, run_.answer, emit, config, rag=rag)
        except BaseException as exc:
            error = await _broken(rt, turn, run_, exc, emit)
            if error is exc:
                raise
            raise error from exc
        answer = await _store(rt, turn, run_, MessageStatus.complete)
        emit(final_frame(answer))
    title = rt.spawn(_title(rt, turn, answer.content, emit)) if turn.title_due else None
    return TurnResult(turn.user_message, answer, run_.answer.sources, title)


async def _streamed(rt: Runtime, req: TurnRequest, emit: Emit, partial: Partial) -> None:
    # Cancelled: the partial answer is stored and `cancelled` sent.
    with (
        contextlib.suppress(asyncio.CancelledError),
        failures_told(emit, log, "turn failed in conversation %s", req.conversation_id),
    ):
        await run(rt, req, emit=emit, partial=partial)


def start(
    rt: Runtime, hub: Hub, req: TurnRequest, sink: asyncio.Queue[Frame] | None = None
) -> asyncio.Task:
    """Run the turn as its own task, so that it finishes and is stored whatever the client
    does; its frames go to every socket of the conversation (the hub) and to `sink`."""

    def emit(frame: Frame) -> None:
        hub.publish(req.conversation_id, frame)
        if sink is not None:
            sink.put_nowait(frame)

    partial = Partial(rt)
    task = rt.spawn(_streamed(rt, req, emit, partial))
    hub.track(req.conversation_id, task, flush=partial.save_soon)
    return task
