"""REST routes that answer: send, reply, regenerate and edit (and the SSE stream of each).

Each builds a `TurnRequest` and runs it (turns.py). With `Accept: text/event-stream` the
turn's frames stream as Server-Sent Events instead (one event per frame, named for its
type, with keep-alive comments); the turn runs on if the client goes away.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from advocata_chat import conversations, resume, turns
from advocata_chat.deps import CurrentUser, RuntimeDep
from advocata_chat.errors import (
    DatabaseUnavailable,
    InvalidInput,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    error_responses,
    is_database_down,
)
from advocata_chat.examples import SSE_RESUMED
from advocata_chat.frames import Frame, MessageReceived, Token
from advocata_chat.limits import QuotaExceeded, RateLimited
from advocata_chat.messages import CannotEdit, MessageNotFound, NothingToAnswer
from advocata_chat.responses import AUTH, CONV, CONVERSATION, DB, JSON_BODY
from advocata_chat.resume import Cursor
from advocata_chat.schemas import (
    SSE_EXAMPLE,
    ConversationOut,
    EditMessage,
    Regenerate,
    Reply,
    SendMessage,
)
from advocata_chat.turns import ConversationBusy, ConversationNotActive, TurnRequest

router = APIRouter(prefix="/api/v1/chat", tags=["chat"])

TURN = (
    ConversationNotActive,
    NothingToAnswer,
    ConversationBusy,
    RateLimited,
    QuotaExceeded,
    ModelError,
    ModelUnavailable,
    ModelTimeout,
)
# A turn answers with the conversation, or streams it as Server-Sent Events.
TURN_OK = {
    200: {
        "description": "The conversation with the answer; with `Accept: text/event-stream`, "
        "the turn's frames as Server-Sent Events",
        "content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_EXAMPLE}},
    }
}
TURN_RESPONSES = {**TURN_OK, **error_responses(*AUTH, *DB, *CONVERSATION, *JSON_BODY, *TURN)}
PING_SECONDS = 15  # a comment line this often keeps proxies from closing an idle stream


async def answer(request: Request, rt, req: TurnRequest):
    """Run the turn: as Server-Sent Events if the client asked for them, else to the end,
    returning the whole conversation."""
    if "text/event-stream" in request.headers.get("accept", ""):
        # Ownership is checked before the stream starts, so a 404 is still a plain 404.
        await conversations.get(
            rt.sessions,
            user_id=req.user_id,
            conversation_id=req.conversation_id,
            include_messages=False,
        )
        sink: asyncio.Queue[Frame] = asyncio.Queue()
        turns.start(rt, request.app.state.hub, req, sink)
        return _events(sink)
    result = await turns.run(rt, req)
    if result.title is not None:
        await result.title  # the response shows the new conversation's title
    # The answer is stored: if the database goes away before it can be read back, the
    # 503 names the stored message (never send it again).
    try:
        return await conversations.get(
            rt.sessions, user_id=req.user_id, conversation_id=req.conversation_id
        )
    except Exception as exc:
        if not is_database_down(exc):
            raise
        raise DatabaseUnavailable(
            conversation_id=req.conversation_id, user_message_id=result.user_message.id
        ) from exc


def _events(sink: asyncio.Queue[Frame]) -> EventSourceResponse:
    async def events() -> AsyncIterator[ServerSentEvent]:
        answer: uuid.UUID | None = None
        while True:
            frame = await sink.get()
            if isinstance(frame, MessageReceived):
                answer = frame.answer_id
            yield _event(frame, answer)
            if frame.final:
                return

    return _response(events())


def _event(frame: Frame, answer: uuid.UUID | None) -> ServerSentEvent:
    """One frame as an event named for its type. Token events carry the id
    `<answer id>:<offset reached>`, which `GET .../stream` takes as `Last-Event-ID`."""
    event_id = None
    if isinstance(frame, Token) and answer is not None:
        event_id = f"{answer}:{frame.offset + len(frame.delta)}"
    return ServerSentEvent(data=frame.encode(), event=frame.type, id=event_id)


def _response(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(events, ping=PING_SECONDS, headers={"Cache-Control": "no-cache"})


def _position(last_event_id: str | None, message_id, offset: int) -> tuple[uuid.UUID | None, int]:
    if last_event_id:
        answer, _, reached = last_event_id.partition(":")
        try:
            return uuid.UUID(answer), int(reached or 0)
        except ValueError:
            raise InvalidInput(
                "Last-Event-ID must be `<message id>:<offset>`, as sent with the token events",
                detail=[{"loc": ["header", "last-event-id"]}],
            ) from None
    return message_id, offset


@router.post(
    CONV + "/messages",
    response_model=ConversationOut,
    summary="Send a message and get the answer",
    responses=TURN_RESPONSES,
)
async def send_message(
    conversation_id: uuid.UUID,
    body: SendMessage,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
):
    """Store the user's message, answer it (with `use_rag`, from the user's documents, with
    `[n]` citations) and return the whole conversation. With `Accept: text/event-stream`
    the answer streams as Server-Sent Events instead, with the WebSocket's frames
    (`message_received`, `sources`, `token`, then `message` or `error`).

    If the model fails, the message stays stored and the error's `detail.retry` names the
    `reply` call that answers it; never send it again."""
    content = conversations.check_message(rt.settings, body.message_content)
    req = TurnRequest.send(
        user_id=user,
        conversation_id=conversation_id,
        content=content,
        use_rag=body.use_rag,
        attachments=body.attachments,  # photos and scans it carries
    )
    return await answer(request, rt, req)


@router.post(
    CONV + "/reply",
    response_model=ConversationOut,
    responses=TURN_RESPONSES,
    summary="Answer the pending user message",
    description="Generates the assistant's answer to the conversation's last message when "
    "that message is the user's: after creating a conversation with `initial_message`, or to "
    "retry after a model failure. 409 when there is nothing to answer.",
)
async def reply(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    body: Reply | None = None,
):
    use_rag = body.use_rag if body else True
    req = TurnRequest.reply(user_id=user, conversation_id=conversation_id, use_rag=use_rag)
    return await answer(request, rt, req)


@router.post(
    CONV + "/regenerate",
    response_model=ConversationOut,
    summary="Answer the last question again",
    responses=TURN_RESPONSES,
)
async def regenerate(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    body: Regenerate | None = None,
):
    """Answer the last user question again. The previous answer is kept as a superseded
    version (see `include_superseded`) and its tokens stay counted. With
    `Accept: text/event-stream` the new answer streams as Server-Sent Events."""
    use_rag = body.use_rag if body else True
    req = TurnRequest.regenerate(user_id=user, conversation_id=conversation_id, use_rag=use_rag)
    return await answer(request, rt, req)


@router.patch(
    CONV + "/messages/{message_id}",
    response_model=ConversationOut,
    summary="Edit the last user message and answer it again",
    responses={
        **TURN_OK,
        **error_responses(
            *AUTH, *DB, *CONVERSATION, MessageNotFound, *JSON_BODY, CannotEdit, *TURN
        ),
    },
)
async def edit_message(
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    body: EditMessage,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
):
    """Replace the conversation's last user message with `content` and answer it again. The
    old question and its answer are kept as superseded versions (`replaces_id` points back)
    and leave the visible chat and the model's history. With `Accept: text/event-stream`
    the new answer streams as Server-Sent Events."""
    content = conversations.check_message(rt.settings, body.content, field="content")
    req = TurnRequest.edit(
        user_id=user,
        conversation_id=conversation_id,
        message_id=message_id,
        content=content,
        use_rag=body.use_rag,
    )
    return await answer(request, rt, req)


@router.get(
    CONV + "/stream",
    summary="Resume the answer being generated",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "The rest of the answer as Server-Sent Events: a `token` with the "
            "text from the offset, then live `token`s, then `message` (or `error`/`cancelled`)",
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "example": SSE_RESUMED}
            },
        },
        **error_responses(*AUTH, *DB, *CONVERSATION, MessageNotFound),
    },
)
async def resume_stream(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    message_id: Annotated[
        uuid.UUID | None,
        Query(description="The answer; default: the one in progress, else the last one"),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000, description="Characters you have")] = 0,
    last_event_id: Annotated[
        str | None, Header(description="`<message id>:<offset>`, the last token event's id")
    ] = None,
):
    """Continue an answer from where a dropped stream (REST SSE or WebSocket) left it, on
    any server process: the text from `offset` (or from `Last-Event-ID`, as an
    `EventSource` sends on reconnecting), then the rest live, each character once, then
    the final `message`. An answer already stored streams its rest and `message` at once.
    404 for an answer not in this conversation, or a conversation with none."""
    await conversations.get(
        rt.sessions, user_id=user, conversation_id=conversation_id, include_messages=False
    )
    answer, offset = _position(last_event_id, message_id, offset)
    answer = answer or await resume.latest(rt, conversation_id)
    if answer is None:
        raise MessageNotFound("This conversation has no answer yet")
    hub = request.app.state.hub
    cursor = Cursor(rt, hub, conversation_id=conversation_id, message_id=answer, offset=offset)
    return _response(_resumed(hub, cursor))


async def _resumed(hub, cursor: Cursor) -> AsyncIterator[ServerSentEvent]:
    live: asyncio.Queue[Frame] = asyncio.Queue()
    hub.subscribe(cursor.conversation_id, live)  # first, so that nothing falls between
    try:
        frames = await cursor.start()
        while True:
            for frame in frames:
                yield _event(frame, cursor.message_id)
            if cursor.done:
                return
            frames = await cursor.admit(await live.get())
    finally:
        hub.unsubscribe(cursor.conversation_id, live)
