"""Resuming an answer that is being generated, from any server process.

The stream's buffer lives where every process sees it. The conversation row names the answer
in progress (`answer_id`, set and cleared with the turn's lease) and holds its text so far
(`answer_text`) and its sources (`answer_sources`: the `sources` frame a resuming client
missed); the process generating it writes them when asked (`Hub.request_flush`, which
travels through the bridge), so a turn costs no extra statement unless someone resumes it.
Live deltas come through the hub as usual; every `token` frame carries its offset in the
answer, so a `Cursor` can put the stored text and the live deltas together with nothing
lost or repeated.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import NamedTuple

from sqlalchemy import func, select

from advocata_chat.frames import (
    Cancelled,
    Error,
    Frame,
    MessageFrame,
    MessageReceived,
    Sources,
    Token,
    final_frame,
)
from advocata_chat.hub import Hub
from advocata_chat.messages import MessageNotFound
from advocata_chat.models import Conversation, Message, Role
from advocata_chat.runtime import Runtime

FILL_TRIES = 100  # × FILL_SECONDS: how long a gap may wait for the generating process
FILL_SECONDS = 0.05


async def in_progress(rt: Runtime, conversation_id: uuid.UUID) -> uuid.UUID | None:
    """The id of the answer being generated in the conversation, by any process, if any."""
    async with rt.sessions() as s:
        return await s.scalar(
            select(Conversation.answer_id).where(
                Conversation.id == conversation_id, Conversation.turn_lock_until > func.now()
            )
        )


async def latest(rt: Runtime, conversation_id: uuid.UUID) -> uuid.UUID | None:
    """The answer in progress, or else the conversation's last visible answer."""
    answering = await in_progress(rt, conversation_id)
    if answering is not None:
        return answering
    async with rt.sessions() as s:
        return await s.scalar(
            select(Message.id)
            .where(
                Message.conversation_id == conversation_id,
                Message.role == Role.assistant,
                Message.superseded_at.is_(None),
            )
            .order_by(Message.seq.desc())
            .limit(1)
        )


class Stored(NamedTuple):
    text: str  # the answer's text as far as the database has it
    sources: list[dict] | None  # its sources, while it is generated (once written)
    message: Message | None  # the stored answer, once it is; None while generated


async def stored_text(
    rt: Runtime, conversation_id: uuid.UUID, message_id: uuid.UUID
) -> Stored | None:
    """The answer as far as the database has it; None for no such answer."""
    async with rt.sessions() as s:
        row = (
            await s.execute(
                select(Conversation.answer_text, Conversation.answer_sources).where(
                    Conversation.id == conversation_id, Conversation.answer_id == message_id
                )
            )
        ).first()
        if row is not None:
            return Stored(row[0] or "", row[1], None)
        msg = await s.get(Message, message_id)
    if msg is None or msg.conversation_id != conversation_id:
        return None
    return Stored(msg.content, None, msg)


class Cursor:
    """One client's place in one answer. Frames for the client go through `admit`; the
    text it lacks comes from the database; every character is sent once, in order."""

    def __init__(
        self,
        rt: Runtime,
        hub: Hub,
        *,
        conversation_id: uuid.UUID,
        message_id: uuid.UUID,
        offset: int,
    ) -> None:
        self.rt, self.hub = rt, hub
        self.conversation_id = conversation_id
        self.message_id = message_id
        self.sent = offset
        # The client has the whole answer (or the turn ended): this answer's late frames are
        # dropped, the rest pass through, until the next turn starts (`detached`).
        self.done = False
        self.detached = False
        self.sources_sent = False  # the answer's `sources` frame, stored or live

    async def start(self) -> list[Frame]:
        """What the client lacks now: the text from its offset, and the final `message`
        frame if the answer is already stored."""
        self.hub.request_flush(self.conversation_id)
        got = await stored_text(self.rt, self.conversation_id, self.message_id)
        if got is None:
            self.done = self.detached = True
            return [Error.of(MessageNotFound("No such answer in this conversation"))]
        if got.message is None:
            return [*self._sources(got), *self._upto(got.text)]
        self.done = True
        return [*self._upto(got.text), final_frame(got.message)]

    def _sources(self, got: Stored) -> list[Frame]:
        if self.sources_sent or not got.sources:
            return []
        self.sources_sent = True
        return [Sources(sources=got.sources)]

    def _upto(self, text: str) -> list[Frame]:
        if len(text) <= self.sent:
            return []
        token = Token(delta=text[self.sent :], offset=self.sent)
        self.sent = len(text)
        return [token]

    async def admit(self, frame: Frame) -> list[Frame]:
        """The frames to send the client for a live `frame`."""
        if self.detached:
            return [frame]
        if isinstance(frame, MessageReceived) and frame.answer_id != self.message_id:
            self.done = self.detached = True  # a later turn: its offsets start again from 0
            return [frame]
        ours = isinstance(frame, MessageFrame) and frame.message.id == self.message_id
        if self.done:
            return [] if ours or isinstance(frame, Token) else [frame]
        if isinstance(frame, Token):
            return await self._token(frame)
        if isinstance(frame, Sources):
            if self.sources_sent:
                return []  # the stored copy went first
            self.sources_sent = True
        if ours:
            self.done = True
            return [*self._upto(frame.message.content), frame]
        if isinstance(frame, Cancelled | Error):  # the turn ended with no final message
            self.done = True
        return [frame]

    async def _token(self, token: Token) -> list[Frame]:
        end = token.offset + len(token.delta)
        if end <= self.sent:
            return []  # the client has it already
        out = await self._fill(token.offset) if token.offset > self.sent else []
        if end > self.sent:
            out.append(Token(delta=token.delta[self.sent - token.offset :], offset=self.sent))
            self.sent = end
        return out

    async def _fill(self, upto: int) -> list[Frame]:
        """The text between what was sent and `upto`: live deltas start later than the
        stored text ends until the generating process writes it (asked again every so often,
        in case the request was lost)."""
        for attempt in range(FILL_TRIES):
            if attempt % 10 == 0:
                self.hub.request_flush(self.conversation_id)
            got = await stored_text(self.rt, self.conversation_id, self.message_id)
            if got is not None and (len(got.text) >= upto or got.message is not None):
                return [*self._sources(got), *self._upto(got.text)]
            await asyncio.sleep(FILL_SECONDS)
        return []
