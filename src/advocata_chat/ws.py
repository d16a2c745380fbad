"""The chat WebSocket: the seed's protocol plus streaming frames.

Close codes: 4401 authentication failed or the token expired (checked on every frame, and
at the token's expiry on a socket that only listens), 4404
no such conversation (or not yours), 4400 user_id in the URL does not match the token, 4429
too many open sockets for this user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from advocata_chat import attachments, conversations, resume, turns, voice
from advocata_chat.auth import Principal, bearer_token, decode_principal
from advocata_chat.errors import (
    AppError,
    ConversationNotFound,
    DatabaseUnavailable,
    InvalidInput,
    Unauthorized,
    is_database_down,
)
from advocata_chat.frames import (
    CLIENT_FRAMES,
    CancelFrame,
    ClientFrameBase,
    Connected,
    DocumentFrame,
    EditFrame,
    Error,
    Frame,
    PingFrame,
    Pong,
    RegenerateFrame,
    ReplyFrame,
    ResumeFrame,
    SendFrame,
    VoiceFrame,
    bad,
    document_topic,
    failures_told,
    parse_client,
)
from advocata_chat.resume import Cursor
from advocata_chat.turns import TurnRequest

log = logging.getLogger(__name__)
router = APIRouter()

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400


CLOSE_TOO_MANY = 4429
# How long a socket that connected mid-answer waits for the client's `resume` before it
# sends the answer from its start (see Writer).
RESUME_GRACE_SECONDS = 0.5
__all__ = ["CLIENT_FRAMES", "router"]  # the client frames are frames.ClientFrame


class TooManySockets(AppError):
    status_code = 429
    code = "too_many_sockets"


class TokenBucket:
    """Frames per second a socket may send, with a burst of the same size."""

    def __init__(self, rate: float, clock=time.monotonic) -> None:
        self.rate = rate
        self.tokens = rate
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class SocketCount:
    """Open sockets per user in this process (MAX_SOCKETS_PER_USER applies per process)."""

    def __init__(self) -> None:
        self.open: Counter[uuid.UUID] = Counter()

    @contextlib.contextmanager
    def hold(self, user: uuid.UUID, limit: int):
        if limit and self.open[user] >= limit:
            raise TooManySockets(f"Too many open sockets: the limit is {limit} per user")
        self.open[user] += 1
        try:
            yield
        finally:
            self.open[user] -= 1
            if not self.open[user]:
                del self.open[user]


class UserMismatch(AppError):
    status_code = 400
    code = "user_mismatch"


async def _authenticate(ws: WebSocket) -> Principal:
    rt = ws.app.state.runtime
    token = ws.query_params.get("token")
    if not token:
        token = bearer_token(ws.headers.get("authorization"))
    who = decode_principal(rt.settings, token)
    claimed = ws.query_params.get("user_id")
    if claimed is not None and claimed != str(who.user_id):
        # The seed's ?user_id= never authenticates; it may only repeat the token's subject.
        raise UserMismatch("user_id does not match the token's subject")
    return who


async def _refuse(ws: WebSocket, exc: AppError, code: int) -> None:
    await ws.send_text(Error.of(exc).encode())
    await ws.close(code=code, reason=exc.message[:120])


async def _open(ws: WebSocket, conversation_id: str) -> tuple[Principal, uuid.UUID] | None:
    """Authenticate and find the conversation; close the socket and return None if not."""
    rt = ws.app.state.runtime
    try:
        who = await _authenticate(ws)
        try:
            cid = uuid.UUID(conversation_id)
        except ValueError:
            raise ConversationNotFound() from None
        await conversations.get(
            rt.sessions, user_id=who.user_id, conversation_id=cid, include_messages=False
        )
    except AppError as exc:
        code = {Unauthorized: CLOSE_UNAUTHORIZED, UserMismatch: CLOSE_BAD_REQUEST}.get(
            type(exc), CLOSE_NOT_FOUND
        )
        await _refuse(ws, exc, code)
        return None
    return who, cid


@router.websocket("/ws/chat/{conversation_id}")
async def chat_socket(ws: WebSocket, conversation_id: str) -> None:
    rt = ws.app.state.runtime
    await ws.accept()
    opened = await _open(ws, conversation_id)
    if opened is None:
        return
    who, cid = opened
    try:
        with ws.app.state.sockets.hold(who.user_id, rt.settings.max_sockets_per_user):
            await _serve(ws, who, cid)
    except TooManySockets as exc:
        await _refuse(ws, exc, CLOSE_TOO_MANY)


@dataclass
class Direct:
    """A frame for this socket only (the reply to a client frame): never held back."""

    frame: Frame


@dataclass
class Resume:
    """Continue answer `message_id` from `offset` (the client's `resume` frame, or the
    end of the grace after connecting, from the start)."""

    message_id: uuid.UUID
    offset: int
    auto: bool = False


class Writer:
    """The socket's one writer: hub frames, direct replies and resumes share its queue.

    A socket that connects while an answer is being generated holds that conversation's
    frames until the client says where it is in the answer (`resume`), or for
    RESUME_GRACE_SECONDS, after which it gets the answer from its start: either way the
    client sees every character once, in order (resume.Cursor)."""

    def __init__(self, ws: WebSocket, cid: uuid.UUID, in_progress: uuid.UUID | None) -> None:
        self.ws, self.cid = ws, cid
        self.rt, self.hub = ws.app.state.runtime, ws.app.state.hub
        self.outbox: asyncio.Queue[Frame | Direct | Resume] = asyncio.Queue()
        self.held: list[Frame] | None = [] if in_progress else None
        self.cursor: Cursor | None = None

    def reply(self, frame: Frame) -> None:
        """A frame for this socket only, never held back."""
        self.outbox.put_nowait(Direct(frame))

    async def run(self) -> None:
        with contextlib.suppress(Exception):
            while self.ws.application_state == WebSocketState.CONNECTED:
                for frame in await self._safely(await self.outbox.get()):
                    await self.ws.send_text(frame.encode())

    async def _safely(self, item: Frame | Direct | Resume) -> list[Frame]:
        try:
            return await self._next(item)
        except Exception as exc:
            if not is_database_down(exc):  # resuming reads the database
                raise
            self.held, self.cursor = None, None
            return [Error.of(DatabaseUnavailable())]

    async def _next(self, item: Frame | Direct | Resume) -> list[Frame]:
        if isinstance(item, Direct):
            return [item.frame]
        if isinstance(item, DocumentFrame):  # not part of any answer: never held back
            return [item]
        if isinstance(item, Resume):
            return await self._resume(item)
        if self.held is not None:
            self.held.append(item)
            return []
        return await self._through_cursor([item])

    async def _resume(self, item: Resume) -> list[Frame]:
        if item.auto and self.held is None:
            return []  # the client resumed (or the answer ended) before the grace ran out
        held, self.held = self.held or [], None
        self.cursor = Cursor(
            self.rt,
            self.hub,
            conversation_id=self.cid,
            message_id=item.message_id,
            offset=item.offset,
        )
        return [*await self.cursor.start(), *await self._through_cursor(held)]

    async def _through_cursor(self, frames: list[Frame]) -> list[Frame]:
        out: list[Frame] = []
        for frame in frames:
            out += await self.cursor.admit(frame) if self.cursor else [frame]
            if self.cursor and self.cursor.detached:
                self.cursor = None
        return out


async def _serve(ws: WebSocket, who: Principal, cid: uuid.UUID) -> None:
    rt, hub = ws.app.state.runtime, ws.app.state.hub
    answering = await resume.in_progress(rt, cid)
    out = Writer(ws, cid, answering)
    hub.subscribe(cid, out.outbox)
    hub.subscribe(document_topic(who.user_id), out.outbox)  # `document` frames (ingest.py)
    out.reply(Connected(conversation_id=cid, message_id=answering))
    if answering:
        grace = Resume(answering, 0, auto=True)
        asyncio.get_running_loop().call_later(RESUME_GRACE_SECONDS, out.outbox.put_nowait, grace)
    writer = asyncio.create_task(out.run())
    bucket = TokenBucket(rt.settings.max_ws_frames_per_second, rt.clock)
    try:
        while True:
            # A socket that only listens is closed when its token expires, as one that
            # sends is on its next frame: an expired credential reads nothing more.
            left = who.expires_at - rt.clock()
            try:
                message = await asyncio.wait_for(ws.receive(), left if left < math.inf else None)
            except TimeoutError:
                message = None
            if message is not None and message["type"] == "websocket.disconnect":
                break
            if message is None or rt.clock() >= who.expires_at:
                # REST refuses an expired token on every request; a socket does so per frame.
                # The writer stops first, so the error frame is the last one sent.
                writer.cancel()
                with contextlib.suppress(BaseException):
                    await writer
                await _refuse(ws, Unauthorized("Token has expired"), CLOSE_UNAUTHORIZED)
                break
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode("utf-8", "replace")
            if not bucket.take():
                reply = bad("Too many frames; slow down", "rate_limited")
            else:
                frame = parse_client(raw, max_bytes=rt.settings.max_ws_frame_bytes)
                reply = frame if isinstance(frame, Error) else _handle(out, who.user_id, frame)
            if reply is not None:
                out.reply(reply)
    finally:
        hub.unsubscribe(cid, out.outbox)
        hub.unsubscribe(document_topic(who.user_id), out.outbox)
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer


def _request(user: uuid.UUID, cid: uuid.UUID, frame: ClientFrameBase, settings) -> TurnRequest:
    """The turn a message, reply, regenerate or edit frame asks for (InvalidInput if its
    content is empty or too long)."""
    who = {"user_id": user, "conversation_id": cid, "use_rag": frame.use_rag}
    match frame:
        case SendFrame():
            content = conversations.check_message(settings, frame.content, field="content")
            ids = list(dict.fromkeys(frame.attachments))  # each document once
            ids = attachments.check_count(ids, limit=settings.max_attachments)
            return TurnRequest.send(**who, content=content, attachments=ids)
        case EditFrame():
            content = conversations.check_message(settings, frame.content, field="content")
            return TurnRequest.edit(**who, message_id=frame.message_id, content=content)
        case RegenerateFrame():
            return TurnRequest.regenerate(**who)
    return TurnRequest.reply(**who)


def _handle(out: Writer, user: uuid.UUID, frame: ClientFrameBase) -> Frame | None:
    """Act on one client frame; return a frame for this socket only, if any."""
    rt, hub, cid = out.rt, out.hub, out.cid
    match frame:
        case PingFrame():
            return Pong()
        case CancelFrame():
            hub.cancel(cid)  # in whichever process the answer is being generated
        case ResumeFrame():
            out.outbox.put_nowait(Resume(frame.message_id, frame.offset))
        case SendFrame() | ReplyFrame() | RegenerateFrame() | EditFrame():
            try:
                turns.start(rt, hub, _request(user, cid, frame, rt.settings))
            except InvalidInput as exc:
                return Error.of(exc)
        case VoiceFrame():
            # Transcribing takes seconds: not in the loop that reads this socket's frames.
            rt.spawn(_voice_turn(out, user, frame))
    return None


async def _voice_turn(out: Writer, user: uuid.UUID, frame: VoiceFrame) -> None:
    """The REST voice route's steps for an uploaded recording: transcribe it, then run the
    turn, which uses the upload up as it stores the message. What goes wrong before the
    turn starts is told to this socket only, like a refused `message` frame."""
    rt = out.rt
    with failures_told(out.reply, log, "voice frame failed in conversation %s", out.cid):
        voice.endpoint(rt.settings)  # no recogniser: say so before reading anything
        upload = await voice.load_upload(
            rt, user_id=user, conversation_id=out.cid, upload_id=frame.upload_id
        )
        heard = await voice.hear(
            rt.settings,
            data=upload.data,
            media_type=upload.media_type,
            seconds=upload.duration_seconds,
        )
        content = conversations.check_message(rt.settings, heard["transcript"], field="content")
        request = TurnRequest.send(
            user_id=user,
            conversation_id=out.cid,
            content=content,
            use_rag=frame.use_rag,
            voice=heard,
            voice_upload=upload.id,
        )
        turns.start(rt, out.hub, request)
