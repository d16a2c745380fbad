"""Fan-out of a conversation's frames to every open socket, in every server process.

Frames go at once to this process's subscribers (queues of typed frames) and, through the
PostgreSQL bridge (bridge.py), to the other processes, which deliver them to theirs. The hub
also knows which answers this process is generating, so that a cancel (or a request to
write the partial answer now, for a client resuming it) reaches them from any process.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable

from advocata_chat.bridge import Bridge, Item
from advocata_chat.frames import Frame

log = logging.getLogger(__name__)
# A conversation's frames, or another topic: a user's document events (frames.document_topic).
Topic = uuid.UUID | str


class Hub:
    def __init__(self, conninfo: str | None) -> None:
        self.subscribers: dict[str, set[asyncio.Queue[Frame]]] = defaultdict(set)
        # Answers being generated here: their task, and what writes their partial text now.
        self.generations: dict[str, dict[asyncio.Task, Callable[[], None]]] = defaultdict(dict)
        self.bridge = Bridge(conninfo, self._from_bridge) if conninfo else None

    async def start(self) -> None:
        if self.bridge:
            await self.bridge.start()

    async def stop(self) -> None:
        if self.bridge:
            await self.bridge.stop()

    # -- frames ----------------------------------------------------------------------
    def subscribe(self, conversation_id: Topic, queue: asyncio.Queue[Frame]) -> None:
        self.subscribers[str(conversation_id)].add(queue)

    def unsubscribe(self, conversation_id: Topic, queue: asyncio.Queue[Frame]) -> None:
        subs = self.subscribers.get(str(conversation_id))
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del self.subscribers[str(conversation_id)]

    def _deliver(self, conversation: str, frame: Frame) -> None:
        for queue in list(self.subscribers.get(conversation, ())):
            queue.put_nowait(frame)

    def publish(self, conversation_id: Topic, frame: Frame) -> None:
        conversation = str(conversation_id)
        self._deliver(conversation, frame)
        if self.bridge:
            self.bridge.send(conversation, frame)

    # -- generations: cancel and flush -----------------------------------------------
    def track(
        self, conversation_id: uuid.UUID, task: asyncio.Task, flush: Callable[[], None]
    ) -> None:
        key = str(conversation_id)
        self.generations[key][task] = flush
        task.add_done_callback(lambda t: self._untrack(key, t))

    def _untrack(self, key: str, task: asyncio.Task) -> None:
        tasks = self.generations.get(key)
        if tasks is not None:
            tasks.pop(task, None)
            if not tasks:
                del self.generations[key]

    def _signal(self, conversation: str, control: str) -> None:
        for task, flush in list(self.generations.get(conversation, {}).items()):
            if control == "cancel":
                task.cancel()
            else:
                flush()

    def cancel(self, conversation_id: uuid.UUID) -> None:
        """Stop the answer being generated in the conversation, in whichever process."""
        self._signal(str(conversation_id), "cancel")
        if self.bridge:
            self.bridge.send(str(conversation_id), "cancel")

    def request_flush(self, conversation_id: uuid.UUID) -> None:
        """Ask whichever process generates the conversation's answer to store its partial
        text now (a client is resuming it)."""
        self._signal(str(conversation_id), "flush")
        if self.bridge:
            self.bridge.send(str(conversation_id), "flush")

    def _from_bridge(self, conversation: str, item: Item) -> None:
        if isinstance(item, str):
            self._signal(conversation, item)
        else:
            self._deliver(conversation, item)
