"""Running a turn as its own task, so it finishes and is stored whatever the client does,
and streaming its events to WebSocket subscribers (via the hub) and to SSE responses."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

from advocata_chat import turns
from advocata_chat.errors import AppError, DatabaseUnavailable, is_database_down
from advocata_chat.hub import Hub, dumps
from advocata_chat.runtime import Runtime

log = logging.getLogger(__name__)
FINAL = ('{"type":"message"', '{"type":"error"', '{"type":"cancelled"')


def error_frame(exc: AppError) -> dict:
    frame = {"type": "error", "error": exc.message, "code": exc.code}
    if exc.detail is not None:
        frame["detail"] = exc.detail
    return frame


async def _run(
    rt: Runtime,
    hub: Hub,
    conversation_id: uuid.UUID,
    sink: asyncio.Queue | None,
    turn: dict,
) -> None:
    async def emit(event: dict) -> None:
        await hub.publish(conversation_id, event)
        if sink is not None:
            sink.put_nowait(dumps(event))

    try:
        await turns.run_turn(rt, conversation_id=conversation_id, emit=emit, **turn)
    except AppError as exc:
        await emit(error_frame(exc))
    except asyncio.CancelledError:
        pass  # run_turn stored the partial answer and sent `cancelled`
    except Exception as exc:
        if is_database_down(exc):
            await emit(error_frame(DatabaseUnavailable()))
            return
        log.exception("turn failed in conversation %s", conversation_id)
        await emit({"type": "error", "error": "Internal server error", "code": "internal_error"})


def start_turn(
    rt: Runtime,
    hub: Hub,
    *,
    conversation_id: uuid.UUID,
    sink: asyncio.Queue | None = None,
    **turn,
) -> asyncio.Task:
    """Run a turn as its own task. `turn` holds run_turn's arguments: user_id, content,
    use_rag, mode, edit_id."""
    task = rt.spawn(_run(rt, hub, conversation_id, sink, turn))
    hub.track(conversation_id, task)
    return task


async def sse_stream(
    rt: Runtime, hub: Hub, *, conversation_id: uuid.UUID, **turn
) -> AsyncIterator[str]:
    """Server-Sent Events for one turn. The turn runs on if the client goes away."""
    sink: asyncio.Queue[str] = asyncio.Queue()
    start_turn(rt, hub, conversation_id=conversation_id, sink=sink, **turn)
    while True:
        text = await sink.get()
        kind = text[9 : text.index('"', 9)]
        yield f"event: {kind}\ndata: {text}\n\n"
        if text.startswith(FINAL):
            return
