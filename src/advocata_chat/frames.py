"""WebSocket/SSE frames of a turn, and the callback that turns model tokens into frames."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from langchain_core.callbacks import AsyncCallbackHandler

from advocata_chat.models import Message
from advocata_chat.schemas import DocumentOut, MessageOut

Emit = Callable[[dict], Awaitable[None]]


class TokenEmitter(AsyncCallbackHandler):
    """Sends each new token of the answer model as a `token` frame.

    Only runs tagged `answer` count: the condense step's tokens are not the answer.
    """

    # Awaited in place: otherwise LangChain wraps every token's callback in its own task,
    # which was the largest per-token cost in bench/fanout.py.
    run_inline = True

    def __init__(self, emit: Emit) -> None:
        self.emit = emit

    async def on_llm_new_token(self, token: str, *, tags: list[str] | None = None, **kw) -> None:
        if token and tags and "answer" in tags:
            await self.emit({"type": "token", "delta": token})


def message_json(msg: Message) -> dict:
    return MessageOut.model_validate(msg).model_dump(mode="json")


def final_frame(msg: Message) -> dict:
    """The seed's final `message` frame."""
    return {
        "type": "message",
        "message": message_json(msg),
        "conversation": getattr(msg, "conversation_totals", None),
    }


def public_source(source: dict) -> dict:
    """What clients see of a retrieved chunk (the `sources` frame, the search endpoint)."""
    keys = (
        "n",
        "document_id",
        "chunk_id",
        "title",
        "page",
        "start",
        "end",
        "score",
        "similarity",
        "bm25",
        "found_by",
    )
    return {k: source.get(k) for k in keys} | {"content": source.get("content", "")}


def document_topic(user_id: uuid.UUID) -> str:
    """The hub topic of a user's document events; every socket of the user subscribes."""
    return f"documents:{user_id}"


def document_frame(doc: DocumentOut) -> dict:
    """Sent to each of the owner's sockets when a document changes state or progresses."""
    fields = {"id", "title", "status", "progress", "chunk_count", "error", "error_code"}
    return {"type": "document", **doc.model_dump(mode="json", include=fields)}
