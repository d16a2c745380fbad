"""The chat WebSocket: the seed's protocol plus streaming frames.

Close codes: 4401 authentication failed or the token expired (checked on every frame), 4404
no such conversation (or not yours), 4400 user_id in the URL does not match the token, 4429
too many open sockets for this user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from advocata_chat import conversations
from advocata_chat.auth import Principal, bearer_token, decode_principal
from advocata_chat.errors import AppError, ConversationNotFound, InvalidInput, Unauthorized
from advocata_chat.frames import document_topic
from advocata_chat.hub import dumps
from advocata_chat.streaming import error_frame, start_turn

router = APIRouter()

CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_BAD_REQUEST = 4400


CLOSE_TOO_MANY = 4429

# The frames a client may send. Anything else is `unknown_frame`, so a new frame type must
# be listed here, and the tests that go through every frame type pick it up.
CLIENT_FRAMES = ("message", "reply", "regenerate", "edit", "cancel", "ping")


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


@router.websocket("/ws/chat/{conversation_id}")
async def chat_socket(ws: WebSocket, conversation_id: str) -> None:
    rt, hub = ws.app.state.runtime, ws.app.state.hub
    await ws.accept()
    try:
        who = await _authenticate(ws)
        user = who.user_id
        try:
            cid = uuid.UUID(conversation_id)
        except ValueError:
            raise ConversationNotFound() from None
        await conversations.get(
            rt.sessions, user_id=user, conversation_id=cid, include_messages=False
        )
    except AppError as exc:
        code = {Unauthorized: CLOSE_UNAUTHORIZED, UserMismatch: CLOSE_BAD_REQUEST}.get(
            type(exc), CLOSE_NOT_FOUND
        )
        await ws.send_text(dumps(error_frame(exc)))
        await ws.close(code=code, reason=exc.message[:120])
        return

    limit = rt.settings.max_sockets_per_user
    if limit and hub.sockets.get(user, 0) >= limit:
        exc = TooManySockets(f"Too many open sockets: the limit is {limit} per user")
        await ws.send_text(dumps(error_frame(exc)))
        await ws.close(code=CLOSE_TOO_MANY, reason=exc.message)
        return
    hub.sockets[user] = hub.sockets.get(user, 0) + 1

    # One writer per socket: hub events and direct replies share this queue.
    outbox: asyncio.Queue[str] = asyncio.Queue()
    hub.subscribe(cid, outbox)
    hub.subscribe(document_topic(user), outbox)  # `document` frames (ingest.py)
    outbox.put_nowait(
        dumps({"type": "connected", "conversation_id": str(cid), "message": "Connected to chat"})
    )
    writer = asyncio.create_task(_write(ws, outbox))
    bucket = TokenBucket(rt.settings.max_ws_frames_per_second, rt.clock)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if rt.clock() >= who.expires_at:
                # REST refuses an expired token on every request; a socket does so per frame.
                # The writer stops first, so the error frame is the last one sent.
                writer.cancel()
                with contextlib.suppress(BaseException):
                    await writer
                exc = Unauthorized("Token has expired")
                await ws.send_text(dumps(error_frame(exc)))
                await ws.close(code=CLOSE_UNAUTHORIZED, reason=exc.message)
                break
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode("utf-8", "replace")
            if not bucket.take():
                frame = _bad("Too many frames; slow down", "rate_limited")
            else:
                frame = _handle(ws, rt, hub, user, cid, raw)
            if frame is not None:
                outbox.put_nowait(dumps(frame))
    finally:
        hub.sockets[user] -= 1
        if not hub.sockets[user]:
            del hub.sockets[user]
        hub.unsubscribe(cid, outbox)
        hub.unsubscribe(document_topic(user), outbox)
        writer.cancel()
        with contextlib.suppress(BaseException):
            await writer


async def _write(ws: WebSocket, outbox: asyncio.Queue[str]) -> None:
    with contextlib.suppress(Exception):
        while ws.application_state == WebSocketState.CONNECTED:
            await ws.send_text(await outbox.get())


def _bad(message: str, code: str) -> dict:
    return {"type": "error", "error": message, "code": code}


def _handle(ws, rt, hub, user: uuid.UUID, cid: uuid.UUID, raw: str) -> dict | None:
    """Act on one client frame; return a frame for this socket only, if any."""
    if len(raw.encode()) > rt.settings.max_ws_frame_bytes:
        return _bad(
            f"Frame is over the {rt.settings.max_ws_frame_bytes}-byte limit", "frame_too_large"
        )
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError also covers integers past Python's 4300-digit limit, RecursionError
        # thousands of nested brackets; neither is a JSONDecodeError.
        return _bad("Frame is not valid JSON", "invalid_json")
    if not isinstance(frame, dict):
        return _bad("Frame must be a JSON object", "invalid_frame")
    kind = frame.get("type")
    if kind not in CLIENT_FRAMES:
        return _bad(
            f"Unknown frame type {kind!r}; expected one of: {', '.join(CLIENT_FRAMES)}",
            "unknown_frame",
        )
    use_rag = frame.get("use_rag", True)
    if not isinstance(use_rag, bool):
        return _bad("use_rag must be true or false", "validation_error")
    if kind == "message":
        content = frame.get("content")
        if not isinstance(content, str):
            return _bad("A message frame needs a string 'content'", "validation_error")
        try:
            content = conversations.check_message(rt.settings, content, field="content")
        except InvalidInput as exc:
            return error_frame(exc)
        start_turn(rt, hub, user_id=user, conversation_id=cid, content=content, use_rag=use_rag)
    elif kind in ("reply", "regenerate"):
        start_turn(
            rt,
            hub,
            user_id=user,
            conversation_id=cid,
            content=None,
            use_rag=use_rag,
            mode="regenerate" if kind == "regenerate" else "send",
        )
    elif kind == "edit":
        content, message_id = frame.get("content"), frame.get("message_id")
        try:
            edit_id = uuid.UUID(str(message_id))
            if not isinstance(content, str):
                raise ValueError
        except ValueError:
            return _bad(
                "An edit frame needs 'message_id' and a string 'content'", "validation_error"
            )
        try:
            content = conversations.check_message(rt.settings, content, field="content")
        except InvalidInput as exc:
            return error_frame(exc)
        start_turn(
            rt,
            hub,
            user_id=user,
            conversation_id=cid,
            content=content,
            use_rag=use_rag,
            mode="edit",
            edit_id=edit_id,
        )
    elif kind == "cancel":
        asyncio.get_running_loop().create_task(hub.cancel(cid))
    elif kind == "ping":
        return {"type": "pong"}
    return None
