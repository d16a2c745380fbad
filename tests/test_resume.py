"""Resumable streams, end to end: two real server processes on one database, a slow model
(the OpenAI-protocol stub, a word every 20 ms), a client that drops mid-answer and comes
back on the other process."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import websockets

from advocata_chat.auth import mint_token
from advocata_chat.frames import MessageFrame, MessageReceived, Title, Token
from advocata_chat.resume import Cursor
from advocata_chat.schemas import MessageOut
from tests.server import Server

CHAT = "/api/v1/chat/conversations"
REPLY = " ".join(f"слово{i}" for i in range(150))


@pytest.fixture(scope="module")
def pair(openai_database_url, openai_stub):
    servers = [
        Server(
            openai_database_url,
            OPENAI_BASE_URL=openai_stub.base_url,
            OPENAI_MODEL="stub-model",
            OPENAI_MAX_RETRIES="0",
        )
        for _ in range(2)
    ]
    for s in servers:
        s.wait_ready(timeout=90)
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture
def slow(openai_stub):
    openai_stub.reset()
    openai_stub.state.mode = "slow"
    openai_stub.state.reply = REPLY
    yield
    openai_stub.reset()


def session(server, settings):
    token = mint_token(settings, user_id=uuid.uuid4())
    headers = {"Authorization": f"Bearer {token}"}
    cid = httpx.post(f"{server.url}{CHAT}", json={}, headers=headers, timeout=30).json()["id"]
    return cid, headers, token


def ws_url(server, cid, token) -> str:
    return f"ws://127.0.0.1:{server.port}/ws/chat/{cid}?token={token}"


async def recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 30))


async def until_tokens(ws, n: int) -> list[dict]:
    """Frames up to the n-th `token`."""
    frames: list[dict] = []
    while sum(f["type"] == "token" for f in frames) < n:
        frames.append(await recv(ws))
    return frames


async def until(ws, kind: str) -> list[dict]:
    """Frames up to and including the first of type `kind`."""
    frames = [await recv(ws)]
    while frames[-1]["type"] != kind:
        frames.append(await recv(ws))
    return frames


def text_of(frames: list[dict], start: int = 0) -> str:
    """The tokens' text, checking that each starts where the previous one ended."""
    text = ""
    for f in frames:
        if f["type"] == "token":
            assert f["offset"] == start + len(text), (f["offset"], start, len(text))
            text += f["delta"]
    return text


async def stored_answer(server, cid, headers) -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{server.url}{CHAT}/{cid}", headers=headers)
    return r.json()["messages"][-1]


async def test_a_socket_resumes_on_the_other_process_with_nothing_lost_or_repeated(
    pair, slow, settings
):
    one, two = pair
    cid, headers, token = session(one, settings)
    async with websockets.connect(ws_url(one, cid, token)) as ws:
        assert (await recv(ws))["message_id"] is None  # nothing in progress yet
        await ws.send(json.dumps({"type": "message", "content": "Расскажи подробно"}))
        before = await until_tokens(ws, 20)
    answer_id = before[0]["answer_id"]
    had = text_of(before)
    async with websockets.connect(ws_url(two, cid, token)) as ws:
        connected = await recv(ws)
        assert connected["message_id"] == answer_id  # the answer is still being generated
        await ws.send(json.dumps({"type": "resume", "message_id": answer_id, "offset": len(had)}))
        after = await until(ws, "message")
    rest = text_of(after, start=len(had))
    final = after[-1]["message"]
    assert final["id"] == answer_id and final["status"] == "complete"
    assert had + rest == final["content"] == REPLY
    assert (await stored_answer(one, cid, headers))["content"] == had + rest


async def test_a_socket_that_does_not_resume_gets_the_answer_from_its_start(pair, slow, settings):
    one, two = pair
    cid, headers, token = session(one, settings)
    async with websockets.connect(ws_url(one, cid, token)) as a:
        await recv(a)
        await a.send(json.dumps({"type": "message", "content": "Расскажи подробно"}))
        frames = await until_tokens(a, 10)
        # A second tab opens mid-answer, on the other process, and says nothing.
        async with websockets.connect(ws_url(two, cid, token)) as b:
            assert (await recv(b))["message_id"] == frames[0]["answer_id"]
            seen = await until(b, "message")
    assert text_of(seen) == seen[-1]["message"]["content"] == REPLY


NOTE = "Расписка. Гусев получил от Орлова 120 000 рублей и вернёт их до 1 мая 2026 года."


async def grounded_start(server, settings) -> tuple[str, dict, str, dict]:
    """A user with one document asks about it and drops the socket mid-answer: the session
    and the `sources` frame the dropped socket saw."""
    cid, headers, token = session(server, settings)
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(
            f"{server.url}/api/v1/documents",
            params={"wait": True},
            files={"file": ("расписка.txt", NOTE.encode())},
            headers=headers,
        )
    assert r.status_code == 201, r.text
    async with websockets.connect(ws_url(server, cid, token)) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "message", "content": "Сколько получил Гусев?"}))
        before = await until_tokens(ws, 10)
    sources = next(f for f in before if f["type"] == "sources")
    assert sources["sources"], "the turn was not grounded in the document"
    return cid, headers, token, sources


def assert_sources_first(after: list[dict], sources: dict) -> None:
    kinds = [f["type"] for f in after]
    assert kinds.count("sources") == 1 and kinds.index("sources") < kinds.index("token"), kinds
    assert after[kinds.index("sources")] == sources
    assert text_of(after) == after[-1]["message"]["content"] == REPLY


async def test_a_socket_that_resumes_a_grounded_answer_gets_its_sources_first(pair, slow, settings):
    one, two = pair
    cid, _, token, sources = await grounded_start(one, settings)
    # The client comes back on the other process from offset 0.
    async with websockets.connect(ws_url(two, cid, token)) as ws:
        answer_id = (await recv(ws))["message_id"]
        await ws.send(json.dumps({"type": "resume", "message_id": answer_id, "offset": 0}))
        after = await until(ws, "message")
    assert_sources_first(after, sources)


async def test_an_sse_stream_that_resumes_a_grounded_answer_gets_its_sources_first(
    pair, slow, settings
):
    one, two = pair
    cid, headers, _, sources = await grounded_start(one, settings)
    after = []
    sse = {**headers, "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", f"{two.url}{CHAT}/{cid}/stream", headers=sse) as r,
    ):
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                after.append(json.loads(line[6:]))
    assert_sources_first(after, sources)


async def test_an_sse_stream_resumes_from_last_event_id_on_the_other_process(pair, slow, settings):
    one, two = pair
    cid, headers, _ = session(one, settings)
    sse = {**headers, "Accept": "text/event-stream"}
    last_id, had = None, ""
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"message_content": "Расскажи подробно"}
        async with client.stream(
            "POST", f"{one.url}{CHAT}/{cid}/messages", json=body, headers=sse
        ) as r:
            async for line in r.aiter_lines():
                if line.startswith("id: "):
                    last_id = line[4:]
                if line.startswith("data: ") and '"type":"token"' in line:
                    had += json.loads(line[6:])["delta"]
                    if len(had) > 100:
                        break
        answer_id, _, offset = last_id.partition(":")
        assert int(offset) == len(had)
        events = []
        headers_b = {**sse, "Last-Event-ID": last_id}
        async with client.stream("GET", f"{two.url}{CHAT}/{cid}/stream", headers=headers_b) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
    assert events[-1]["type"] == "message"
    assert had + text_of(events, start=len(had)) == events[-1]["message"]["content"] == REPLY
    assert events[-1]["message"]["id"] == answer_id


async def test_cancel_from_a_tab_on_the_other_process_stops_the_answer(pair, slow, settings):
    one, two = pair
    cid, headers, token = session(one, settings)
    async with (
        websockets.connect(ws_url(one, cid, token)) as a,
        websockets.connect(ws_url(two, cid, token)) as b,
    ):
        await recv(a)
        await recv(b)
        await a.send(json.dumps({"type": "message", "content": "Расскажи подробно"}))
        while (await recv(b))["type"] != "token":
            pass
        await b.send(json.dumps({"type": "cancel"}))
        frames = await until(a, "cancelled")
    final = next(f for f in frames if f["type"] == "message")["message"]
    assert final["status"] == "interrupted" and 0 < len(final["content"]) < len(REPLY)
    assert frames[-1]["message_id"] == final["id"]
    assert (await stored_answer(one, cid, headers))["content"] == final["content"]


async def test_resuming_a_finished_answer_sends_its_rest_and_the_final_message(
    pair, settings, openai_stub
):
    one, two = pair
    openai_stub.reset()
    cid, headers, token = session(one, settings)
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(
            f"{one.url}{CHAT}/{cid}/messages", json={"message_content": "Вопрос"}, headers=headers
        )
        answer = r.json()["messages"][-1]
    async with websockets.connect(ws_url(two, cid, token)) as ws:
        assert (await recv(ws))["message_id"] is None
        await ws.send(json.dumps({"type": "resume", "message_id": answer["id"], "offset": 5}))
        token_frame, final = await recv(ws), await recv(ws)
        await ws.send(json.dumps({"type": "resume", "message_id": str(uuid.uuid4())}))
        unknown = await recv(ws)
    assert token_frame == {"type": "token", "delta": answer["content"][5:], "offset": 5}
    assert final["type"] == "message" and final["message"]["id"] == answer["id"]
    assert unknown["type"] == "error" and unknown["code"] == "not_found"


# -- the cursor's arithmetic (no gaps, so no database) ---------------------------------


def _cursor(offset: int) -> Cursor:
    return Cursor(None, None, conversation_id=uuid.uuid4(), message_id=ANSWER, offset=offset)  # type: ignore[arg-type]


ANSWER = uuid.uuid4()


def _final(content: str) -> MessageFrame:
    message = MessageOut(
        id=ANSWER,
        conversation_id=uuid.uuid4(),
        role="assistant",
        content=content,
        token_count=1,
        status="complete",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return MessageFrame(message=message)


async def test_the_cursor_drops_what_the_client_has_and_cuts_overlaps():
    cursor = _cursor(5)
    assert await cursor.admit(Token(delta="Прошу", offset=0)) == []  # all of it sent before
    assert await cursor.admit(Token(delta="у вас", offset=4)) == [Token(delta=" вас", offset=5)]
    assert await cursor.admit(Token(delta=" суд", offset=9)) == [Token(delta=" суд", offset=9)]
    final = _final("Прошу вас суд.")
    # The final message brings what the live deltas never did, then itself.
    assert await cursor.admit(final) == [Token(delta=".", offset=13), final]
    assert cursor.done and not cursor.detached


async def test_after_the_final_message_the_answers_late_frames_are_dropped_until_a_new_turn():
    cursor = _cursor(0)
    final = _final("Да.")
    assert await cursor.admit(final) == [Token(delta="Да.", offset=0), final]
    assert await cursor.admit(Token(delta="Да", offset=0)) == []  # held back, already sent
    assert await cursor.admit(final) == []
    title = Title(title="Иск")
    assert await cursor.admit(title) == [title]
    later = MessageReceived(message=final.message, answer_id=uuid.uuid4())
    assert await cursor.admit(later) == [later] and cursor.detached
    assert await cursor.admit(Token(delta="Нет", offset=0)) == [Token(delta="Нет", offset=0)]
