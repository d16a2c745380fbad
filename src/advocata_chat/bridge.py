"""The PostgreSQL bridge between server processes: frames and control signals go out with
`NOTIFY` and come back from `LISTEN` in every other process.

Token deltas are coalesced for a few milliseconds before they go to the database, so a
streamed answer costs a handful of notifications, not one per token. `pack` and `Unpacker`
are pure (no I/O), so they are unit-tested on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Literal

import psycopg

from advocata_chat.frames import Frame, Token, decode
from advocata_chat.retries import database_retries

log = logging.getLogger(__name__)

CHANNEL = "advocata_events"
MAX_PAYLOAD = 7000  # NOTIFY payloads are limited to 8000 bytes
FLUSH_SECONDS = 0.02

# What else travels between processes: stop the answer being generated in a conversation,
# or write its partial text to the database now (a client is resuming it elsewhere).
Control = Literal["cancel", "flush"]
Item = Frame | Control
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _merge_tokens(batch: list[tuple[str, Item]]) -> list[tuple[str, Item]]:
    # Merge each conversation's run of token frames into one delta (order is kept per
    # conversation: any other item of it ends the run). Linear in the batch size.
    out: list[tuple[str, Item | list[Token]]] = []
    open_runs: dict[str, list[Token]] = {}
    for conversation, item in batch:
        if isinstance(item, Token):
            run = open_runs.get(conversation)
            if run is None:
                run = open_runs[conversation] = []
                out.append((conversation, run))
            run.append(item)
        else:
            open_runs.pop(conversation, None)
            out.append((conversation, item))
    merged: list[tuple[str, Item]] = []
    for conversation, item in out:
        if isinstance(item, list):
            first = item[0]
            if len(item) > 1:
                first = Token(delta="".join(t.delta for t in item), offset=first.offset)
            item = first
        merged.append((conversation, item))
    return merged


def pack(batch: list[tuple[str, Item]], *, origin: str) -> list[str]:
    """NOTIFY payloads for a batch of (conversation, frame or control), in order."""
    payloads = []
    for conversation, item in _merge_tokens(batch):
        envelope = {"o": origin, "c": conversation}
        if isinstance(item, str):
            payloads.append(_ENCODER.encode({**envelope, "x": item}))
            continue
        text = item.encode()
        whole = _ENCODER.encode({**envelope, "e": text})
        if len(whole.encode()) <= MAX_PAYLOAD:
            payloads.append(whole)
            continue
        # Too big for one NOTIFY (a `sources` frame with long chunks): send it in parts.
        key = uuid.uuid4().hex[:12]
        size = MAX_PAYLOAD // 4  # characters; Cyrillic takes 2 bytes, escapes more
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        for i, piece in enumerate(pieces):
            part = {**envelope, "k": key, "i": i, "n": len(pieces), "p": piece}
            payloads.append(_ENCODER.encode(part))
    return payloads


class Unpacker:
    """Turns payloads back into (origin, conversation, frame or control), joining parts."""

    def __init__(self) -> None:
        self._parts: dict[str, list[str | None]] = {}

    def feed(self, payload: str) -> tuple[str, str, Item] | None:
        msg = json.loads(payload)
        origin, conversation = msg["o"], msg["c"]
        if "x" in msg:
            return origin, conversation, msg["x"]
        if "k" in msg:
            parts = self._parts.setdefault(msg["k"], [None] * msg["n"])
            parts[msg["i"]] = msg["p"]
            if any(p is None for p in parts):
                return None
            del self._parts[msg["k"]]
            return origin, conversation, decode("".join(parts))  # type: ignore[arg-type]
        return origin, conversation, decode(msg["e"])


class Bridge:
    """Sends this process's items to the others, and hands theirs to `on_item`."""

    def __init__(self, conninfo: str, on_item: Callable[[str, Item], None]) -> None:
        self.origin = uuid.uuid4().hex[:12]
        self.conninfo = conninfo
        self.on_item = on_item
        self._outbox: asyncio.Queue[tuple[str, Item]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def send(self, conversation: str, item: Item) -> None:
        self._outbox.put_nowait((conversation, item))

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._forever("event sender", self._send), name="bridge-send"),
            asyncio.create_task(
                self._forever("event listener", self._listen), name="bridge-listen"
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task

    async def _forever(self, what: str, loop) -> None:
        # Both loops only end when their connection is lost; the policy reconnects.
        async for attempt in database_retries(what, seconds=None):
            with attempt:
                await loop()

    async def _send(self) -> None:
        """Drain the outbox: coalesce token deltas, then NOTIFY in one round trip."""
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
            while True:
                batch = [await self._outbox.get()]
                await asyncio.sleep(FLUSH_SECONDS)
                while not self._outbox.empty():
                    batch.append(self._outbox.get_nowait())
                # Binary parameters (%b): the text-format array dumper escapes every
                # payload with a regex, which cost more than the NOTIFY.
                await conn.execute(
                    "SELECT pg_notify(%b, p) FROM unnest(%b::text[]) AS p",
                    (CHANNEL, pack(batch, origin=self.origin)),
                )

    async def _listen(self) -> None:
        unpacker = Unpacker()
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            async for note in conn.notifies():
                got = unpacker.feed(note.payload)
                if got is not None and got[0] != self.origin:  # ours went out locally
                    self.on_item(got[1], got[2])
