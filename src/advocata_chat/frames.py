"""Every WebSocket/SSE frame, as a typed model with its one encoding.

Server frames (`ServerFrame`) travel through the process as these objects: the turn emits
them, the hub fans them out, the bridge carries them to other processes, and only the
socket or the SSE response encodes them (`frame.encode()`). Client frames (`ClientFrame`)
are a discriminated union on `type`; `parse_client` turns a raw text frame into one, or
into the error frame the client gets back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from advocata_chat.errors import AppError, DatabaseUnavailable, is_database_down
from advocata_chat.models import Message
from advocata_chat.schemas import DocumentOut, MessageOut

# -- server frames ----------------------------------------------------------------------


class Frame(BaseModel):
    """A server frame. `final` frames end a turn's stream (SSE stops after one)."""

    model_config = ConfigDict(frozen=True)
    final: ClassVar[bool] = False

    def encode(self) -> str:
        return self.model_dump_json()


class Connected(Frame):
    type: Literal["connected"] = "connected"
    conversation_id: uuid.UUID
    message: str = "Connected to chat"
    # The answer being generated in this conversation right now (by any server process),
    # so that a client that reconnects can `resume` it; null when there is none.
    message_id: uuid.UUID | None = None


class MessageReceived(Frame):
    type: Literal["message_received"] = "message_received"
    message: MessageOut
    answer_id: uuid.UUID | None = None  # the id the answer will have (for `resume`)


class Sources(Frame):
    type: Literal["sources"] = "sources"
    sources: list[dict[str, Any]]


class Token(Frame):
    type: Literal["token"] = "token"
    delta: str
    # Where `delta` starts in the answer, in characters (Unicode code points): a client
    # that resumes sends the offset it has reached and gets the rest, nothing twice.
    offset: int = 0


class MessageFrame(Frame):
    """The seed's final `message` frame: the stored answer and the conversation's totals."""

    final: ClassVar[bool] = True
    type: Literal["message"] = "message"
    message: MessageOut
    conversation: dict[str, int] | None = None


class Cancelled(Frame):
    final: ClassVar[bool] = True
    type: Literal["cancelled"] = "cancelled"
    message_id: uuid.UUID | None = None  # the interrupted answer, if any text was kept


class Title(Frame):
    type: Literal["title"] = "title"
    title: str


class DocumentFrame(Frame):
    """One of the user's documents changed state or progressed (ingest.py): sent to every
    socket of its owner, whatever the conversation, and never held back by a resume."""

    type: Literal["document"] = "document"
    id: uuid.UUID
    title: str
    status: str
    progress: dict[str, Any] | None = None
    chunk_count: int = 0
    error: str | None = None
    error_code: str | None = None


def document_topic(user_id: uuid.UUID) -> str:
    """The hub topic of a user's document events; every socket of the user subscribes."""
    return f"documents:{user_id}"


def document_frame(doc: DocumentOut) -> DocumentFrame:
    fields = set(DocumentFrame.model_fields) - {"type"}
    return DocumentFrame(**doc.model_dump(mode="json", include=fields))


class Pong(Frame):
    type: Literal["pong"] = "pong"


class Error(Frame):
    final: ClassVar[bool] = True
    type: Literal["error"] = "error"
    error: str
    code: str
    detail: Any = None

    def encode(self) -> str:
        # `detail` is left out when there is none, as in the REST error body.
        return self.model_dump_json(exclude={"detail"} if self.detail is None else None)

    @classmethod
    def of(cls, exc: AppError) -> Error:
        return cls(error=exc.message, code=exc.code, detail=exc.detail)


@contextlib.contextmanager
def failures_told(
    tell: Callable[[Error], None], log: logging.Logger, message: str, *args: object
) -> Iterator[None]:
    """Whatever fails inside is told as one `error` frame, as the REST handlers would answer
    it: the error's own, `database_unavailable`, or `internal_error`, which is logged to
    `log` as `message % args`."""
    try:
        yield
    except AppError as exc:
        tell(Error.of(exc))
    except Exception as exc:
        if is_database_down(exc):
            tell(Error.of(DatabaseUnavailable()))
            return
        log.exception(message, *args)
        tell(Error(error="Internal server error", code="internal_error"))


# The server's frames: a new one is added here (and documented in docs/api.md).
ServerFrame = Annotated[
    Connected
    | MessageReceived
    | Sources
    | Token
    | MessageFrame
    | Cancelled
    | Title
    | DocumentFrame
    | Pong
    | Error,
    Field(discriminator="type"),
]
SERVER_FRAMES: tuple[type[Frame], ...] = get_args(get_args(ServerFrame)[0])
_server = TypeAdapter(ServerFrame)


def decode(text: str) -> Frame:
    """The frame `encode` produced (the bridge carries frames between processes as text)."""
    return _server.validate_json(text)


def final_frame(msg: Message) -> MessageFrame:
    return MessageFrame(
        message=MessageOut.model_validate(msg),
        conversation=getattr(msg, "conversation_totals", None),
    )


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


# -- client frames ----------------------------------------------------------------------


class ClientFrameBase(BaseModel):
    # What the client hears when the frame has the right type but wrong fields.
    invalid: ClassVar[str] = "Invalid frame"
    use_rag: StrictBool = True


class SendFrame(ClientFrameBase):
    invalid: ClassVar[str] = "A message frame needs a string 'content'"
    type: Literal["message"]
    content: StrictStr
    attachments: list[uuid.UUID] = Field(default_factory=list)  # uploaded documents' ids


class VoiceFrame(ClientFrameBase):
    """A question by voice: a recording uploaded before, answered like the REST voice route."""

    invalid: ClassVar[str] = (
        "A voice frame needs 'upload_id', the id POST .../voice/uploads returned"
    )
    type: Literal["voice"]
    upload_id: uuid.UUID


class ReplyFrame(ClientFrameBase):
    type: Literal["reply"]


class RegenerateFrame(ClientFrameBase):
    type: Literal["regenerate"]


class EditFrame(ClientFrameBase):
    invalid: ClassVar[str] = "An edit frame needs 'message_id' and a string 'content'"
    type: Literal["edit"]
    message_id: uuid.UUID
    content: StrictStr


class CancelFrame(ClientFrameBase):
    type: Literal["cancel"]


class PingFrame(ClientFrameBase):
    type: Literal["ping"]


class ResumeFrame(ClientFrameBase):
    invalid: ClassVar[str] = "A resume frame needs 'message_id' and an integer 'offset' ≥ 0"
    type: Literal["resume"]
    message_id: uuid.UUID
    offset: Annotated[int, Field(ge=0, strict=True)] = 0


ClientFrame = Annotated[
    SendFrame
    | VoiceFrame
    | ReplyFrame
    | RegenerateFrame
    | EditFrame
    | CancelFrame
    | PingFrame
    | ResumeFrame,
    Field(discriminator="type"),
]
CLIENT_FRAME_MODELS: dict[str, type[ClientFrameBase]] = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(get_args(ClientFrame)[0])
}
# The frames a client may send; anything else is `unknown_frame`. Tests that go through
# every frame type read this tuple.
CLIENT_FRAMES = tuple(CLIENT_FRAME_MODELS)
_client = TypeAdapter(ClientFrame)


def bad(message: str, code: str) -> Error:
    return Error(error=message, code=code)


def parse_client(raw: str, *, max_bytes: int) -> ClientFrameBase | Error:
    """The client's frame, or the error frame that answers it."""
    if len(raw.encode()) > max_bytes:
        return bad(f"Frame is over the {max_bytes}-byte limit", "frame_too_large")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError also covers integers past Python's 4300-digit limit, RecursionError
        # thousands of nested brackets; neither is a JSONDecodeError.
        return bad("Frame is not valid JSON", "invalid_json")
    if not isinstance(data, dict):
        return bad("Frame must be a JSON object", "invalid_frame")
    kind = data.get("type")
    model = CLIENT_FRAME_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return bad(
            f"Unknown frame type {kind!r}; expected one of: {', '.join(CLIENT_FRAMES)}",
            "unknown_frame",
        )
    try:
        return _client.validate_python(data)
    except PydanticValidationError as exc:
        fields = {e["loc"][1] for e in exc.errors() if len(e["loc"]) > 1}
        if "use_rag" in fields:
            return bad("use_rag must be true or false", "validation_error")
        if "attachments" in fields:
            return bad("'attachments' must be a list of document ids", "validation_error")
        return bad(model.invalid, "validation_error")
