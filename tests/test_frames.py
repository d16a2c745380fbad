"""Frames and their packing for the bridge: pure functions, no server, no database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import get_args

import pytest

from advocata_chat import frames
from advocata_chat.bridge import MAX_PAYLOAD, Unpacker, pack
from advocata_chat.frames import (
    CLIENT_FRAME_MODELS,
    SERVER_FRAMES,
    Error,
    Token,
    decode,
    parse_client,
)
from advocata_chat.schemas import MessageOut

MESSAGE = MessageOut(
    id=uuid.uuid4(),
    conversation_id=uuid.uuid4(),
    role="assistant",
    content="Ответ [1].",
    token_count=12,
    status="complete",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)
# One example of every server frame; a new frame type fails the test below until it has one.
EXAMPLES: dict[str, frames.Frame] = {
    "connected": frames.Connected(conversation_id=uuid.uuid4(), message_id=uuid.uuid4()),
    "message_received": frames.MessageReceived(message=MESSAGE, answer_id=uuid.uuid4()),
    "sources": frames.Sources(sources=[{"n": 1, "title": "Договор", "content": "т" * 9000}]),
    "token": frames.Token(delta="При ДТП ", offset=17),
    "message": frames.MessageFrame(
        message=MESSAGE, conversation={"total_tokens": 12, "messages_count": 2}
    ),
    "cancelled": frames.Cancelled(message_id=uuid.uuid4()),
    "title": frames.Title(title="ДТП без пострадавших"),
    "document": frames.DocumentFrame(
        id=uuid.uuid4(),
        title="Договор аренды",
        status="processing",
        progress={"done": 32, "total": 90, "unit": "chunks"},
    ),
    "pong": frames.Pong(),
    "error": frames.Error(error="Ошибка", code="model_error", detail={"retry": "POST …"}),
}


def test_every_server_frame_has_an_example():
    kinds = {get_args(cls.model_fields["type"].annotation)[0] for cls in SERVER_FRAMES}
    assert kinds == set(EXAMPLES)


@pytest.mark.parametrize("kind", EXAMPLES)
def test_every_server_frame_encodes_with_its_type_first_and_decodes_to_itself(kind):
    frame = EXAMPLES[kind]
    text = frame.encode()
    assert text.startswith(f'{{"type":"{kind}"')
    assert json.loads(text)["type"] == kind
    assert decode(text) == frame


def test_an_error_frame_without_detail_has_no_detail_key():
    assert json.loads(Error(error="x", code="invalid_json").encode()) == {
        "type": "error",
        "error": "x",
        "code": "invalid_json",
    }


@pytest.mark.parametrize("kind", EXAMPLES)
def test_every_server_frame_survives_the_bridge(kind):
    frame = EXAMPLES[kind]
    payloads = pack([("c1", frame)], origin="me")
    assert all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    unpacker = Unpacker()
    got = [x for p in payloads if (x := unpacker.feed(p)) is not None]
    assert got == [("me", "c1", frame)]
    if kind == "sources":
        assert len(payloads) > 1  # too big for one NOTIFY: sent in parts


def test_pack_merges_each_conversations_run_of_tokens_and_keeps_order():
    batch = [
        ("a", Token(delta="Пр", offset=0)),
        ("b", Token(delta="X", offset=5)),
        ("a", Token(delta="и ", offset=2)),
        ("a", "flush"),
        ("a", Token(delta="ДТП", offset=4)),
        ("b", Token(delta="Y", offset=6)),
        ("a", frames.Pong()),
    ]
    unpacker = Unpacker()
    got = [unpacker.feed(p) for p in pack(batch, origin="o")]
    assert [(c, item) for _, c, item in got] == [
        ("a", Token(delta="При ", offset=0)),
        ("b", Token(delta="XY", offset=5)),
        ("a", "flush"),
        ("a", Token(delta="ДТП", offset=4)),
        ("a", frames.Pong()),
    ]


def test_parts_of_two_big_frames_interleaved_are_joined_apart():
    one = frames.Sources(sources=[{"content": "а" * 8000}])
    two = frames.Sources(sources=[{"content": "б" * 8000}])
    first, second = pack([("a", one)], origin="o"), pack([("b", two)], origin="o")
    mixed = [p for pair in zip(first, second, strict=True) for p in pair]
    unpacker = Unpacker()
    got = [x for p in mixed if (x := unpacker.feed(p)) is not None]
    assert got == [("o", "a", one), ("o", "b", two)]


# -- client frames --------------------------------------------------------------------

MID = str(uuid.uuid4())
VALID = {
    "message": {"type": "message", "content": "Вопрос"},
    "voice": {"type": "voice", "upload_id": MID},
    "reply": {"type": "reply"},
    "regenerate": {"type": "regenerate", "use_rag": False},
    "edit": {"type": "edit", "message_id": MID, "content": "Правка"},
    "cancel": {"type": "cancel"},
    "ping": {"type": "ping"},
    "resume": {"type": "resume", "message_id": MID, "offset": 12},
}


def test_every_client_frame_has_a_valid_example():
    assert set(VALID) == set(CLIENT_FRAME_MODELS)


@pytest.mark.parametrize("kind", CLIENT_FRAME_MODELS)
def test_every_client_frame_parses_to_its_model(kind):
    frame = parse_client(json.dumps(VALID[kind]), max_bytes=10_000)
    assert type(frame) is CLIENT_FRAME_MODELS[kind]


@pytest.mark.parametrize("kind", CLIENT_FRAME_MODELS)
def test_every_client_frame_refuses_a_non_boolean_use_rag(kind):
    frame = parse_client(json.dumps({**VALID[kind], "use_rag": "yes"}), max_bytes=10_000)
    assert frame == Error(error="use_rag must be true or false", code="validation_error")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{", "invalid_json"),
        ("[" * 100_000, "invalid_json"),
        ("[1]", "invalid_frame"),
        ('{"type": "dance"}', "unknown_frame"),
        ('{"type": ["message"]}', "unknown_frame"),
        ('{"type": "message", "content": 5}', "validation_error"),
        ('{"type": "edit", "message_id": "nope", "content": "x"}', "validation_error"),
        (json.dumps({"type": "resume", "message_id": MID, "offset": -1}), "validation_error"),
        (json.dumps({"type": "resume", "message_id": MID, "offset": "3"}), "validation_error"),
        (json.dumps({"type": "resume", "offset": 3}), "validation_error"),
        (json.dumps({"type": "voice"}), "validation_error"),
        (json.dumps({"type": "voice", "upload_id": "вопрос.webm"}), "validation_error"),
        (json.dumps({"type": "message", "content": "x" * 300_000}), "frame_too_large"),
    ],
)
def test_malformed_client_frames_get_the_error_frame_that_names_the_problem(raw, code):
    frame = parse_client(raw, max_bytes=200_000)
    assert isinstance(frame, Error) and frame.code == code, frame
