"""Fan-out of conversation events to every open socket, in every server process.

Events are delivered at once to this process's subscribers, and sent through PostgreSQL
`NOTIFY` to the other processes, which deliver them to theirs. Token deltas are coalesced for
a few milliseconds per conversation before they go to the database, so a streamed answer
costs a handful of notifications, not one per token. Cancel requests travel the same way, to
whichever process is generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import defaultdict
from typing import Any

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "advocata_events"
MAX_PAYLOAD = 7000  # NOTIFY payloads are limited to 8000 bytes
FLUSH_SECONDS = 0.02


# One encoder for every frame: json.dumps with options builds a new encoder per call,
# and this runs once per streamed token.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
TOKEN_PREFIX = '{"type":"token"'


def dumps(event: dict[str, Any]) -> str:
    return _ENCODER.encode(event)


class Hub:
    def __init__(self, conninfo: str | None) -> None:
        self.origin = uuid.uuid4().hex[:12]
        self.conninfo = conninfo
        self.subscribers: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self.generations: dict[str, set[asyncio.Task]] = defaultdict(set)
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._parts: dict[str, list[str | None]] = {}
        # Open sockets per user in this process (MAX_SOCKETS_PER_USER applies per process).
        self.sockets: dict[uuid.UUID, int] = {}

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self.conninfo:
            self._tasks = [
                asyncio.create_task(self._listen(), name="hub-listen"),
                asyncio.create_task(self._send(), name="hub-send"),
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task

    # -- local subscribers -----------------------------------------------------------
    def subscribe(self, conversation_id: uuid.UUID, queue: asyncio.Queue) -> None:
        self.subscribers[str(conversation_id)].add(queue)

    def unsubscribe(self, conversation_id: uuid.UUID, queue: asyncio.Queue) -> None:
        subs = self.subscribers.get(str(conversation_id))
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del self.subscribers[str(conversation_id)]

    def _deliver(self, conversation: str, text: str) -> None:
        for queue in list(self.subscribers.get(conversation, ())):
            queue.put_nowait(text)

    async def publish(self, conversation_id: uuid.UUID, event: dict[str, Any]) -> None:
        conversation = str(conversation_id)
        text = dumps(event)
        self._deliver(conversation, text)
        if self.conninfo:
            self._outbox.put_nowait((conversation, text))

    # -- generations and cancel ------------------------------------------------------
    def track(self, conversation_id: uuid.UUID, task: asyncio.Task) -> None:
        key = str(conversation_id)
        self.generations[key].add(task)
        task.add_done_callback(lambda t: self._untrack(key, t))

    def _untrack(self, key: str, task: asyncio.Task) -> None:
        tasks = self.generations.get(key)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self.generations[key]

    def _cancel_local(self, conversation: str) -> bool:
        tasks = self.generations.get(conversation, set())
        for task in tasks:
            task.cancel()
        return bool(tasks)

    async def cancel(self, conversation_id: uuid.UUID) -> None:
        conversation = str(conversation_id)
        self._cancel_local(conversation)
        if self.conninfo:
            self._outbox.put_nowait((conversation, dumps({"type": "_cancel"})))

    # -- the database side -----------------------------------------------------------
    async def _send(self) -> None:
        """Drain the outbox: coalesce token deltas, then NOTIFY in one round trip."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                async with conn:
                    while True:
                        batch = [await self._outbox.get()]
                        await asyncio.sleep(FLUSH_SECONDS)
                        while not self._outbox.empty():
                            batch.append(self._outbox.get_nowait())
                        payloads = self._pack(batch)
                        # Binary parameters (%b): the text-format array dumper escapes
                        # every payload with a regex, which cost more than the NOTIFY.
                        await conn.execute(
                            "SELECT pg_notify(%b, p) FROM unnest(%b::text[]) AS p",
                            (CHANNEL, payloads),
                        )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event sender lost its database connection; retrying", exc_info=True)
                await asyncio.sleep(1)

    def _pack(self, batch: list[tuple[str, str]]) -> list[str]:
        # Merge each conversation's run of token frames into one delta (order is kept per
        # conversation: any other event of it ends the run). Linear in the batch size.
        runs: list[tuple[str, str | list[str]]] = []
        open_runs: dict[str, list[str]] = {}
        for conversation, text in batch:
            if text.startswith(TOKEN_PREFIX):
                run = open_runs.get(conversation)
                if run is None:
                    run = open_runs[conversation] = []
                    runs.append((conversation, run))
                run.append(text)
            else:
                open_runs.pop(conversation, None)
                runs.append((conversation, text))
        merged: list[tuple[str, str]] = []
        for conversation, item in runs:
            if isinstance(item, list):
                if len(item) == 1:
                    item = item[0]
                else:
                    delta = "".join(json.loads(t)["delta"] for t in item)
                    item = dumps({"type": "token", "delta": delta})
            merged.append((conversation, item))
        payloads = []
        for conversation, text in merged:
            envelope = {"o": self.origin, "c": conversation}
            whole = dumps({**envelope, "e": text})
            if len(whole.encode()) <= MAX_PAYLOAD:
                payloads.append(whole)
                continue
            # Too big for one NOTIFY (a `sources` frame with long chunks): send in parts.
            key = uuid.uuid4().hex[:12]
            size = MAX_PAYLOAD // 4  # characters; Cyrillic takes 2 bytes, escapes more
            pieces = [text[i : i + size] for i in range(0, len(text), size)]
            for i, piece in enumerate(pieces):
                payloads.append(dumps({**envelope, "k": key, "i": i, "n": len(pieces), "p": piece}))
        return payloads

    async def _listen(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for note in conn.notifies():
                        self._receive(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event listener lost its database connection; retrying", exc_info=True)
                await asyncio.sleep(1)

    def _receive(self, payload: str) -> None:
        msg = json.loads(payload)
        if msg.get("o") == self.origin:
            return  # our own event, already delivered locally
        conversation = msg["c"]
        if "k" in msg:
            parts = self._parts.setdefault(msg["k"], [None] * msg["n"])
            parts[msg["i"]] = msg["p"]
            if any(p is None for p in parts):
                return
            text = "".join(parts)  # type: ignore[arg-type]
            del self._parts[msg["k"]]
        else:
            text = msg["e"]
        if text == '{"type":"_cancel"}':
            self._cancel_local(conversation)
        else:
            self._deliver(conversation, text)
