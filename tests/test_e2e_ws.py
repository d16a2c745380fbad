"""End to end: real `advocata-chat serve` processes on 127.0.0.1, the `websockets` client."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
import websockets

from advocata_chat.auth import mint_token
from tests.server import Server

CHAT = "/api/v1/chat/conversations"


@pytest.fixture(scope="module")
def servers(database_url):
    """Two server processes on one database."""
    pair = [Server(database_url), Server(database_url)]
    for s in pair:
        s.wait_ready()
    yield pair
    for s in pair:
        s.stop()


@pytest.fixture(scope="module")
def stub_server(openai_database_url, openai_stub):
    srv = Server(
        openai_database_url,
        OPENAI_BASE_URL=openai_stub.base_url,
        OPENAI_MODEL="stub-model",
        OPENAI_MAX_RETRIES="0",
    ).wait_ready()
    yield srv
    srv.stop()


def session(server, settings):
    user = uuid.uuid4()
    token = mint_token(settings, user_id=user)
    headers = {"Authorization": f"Bearer {token}"}
    cid = httpx.post(f"{server.url}{CHAT}", json={}, headers=headers, timeout=30).json()["id"]
    ws_url = f"ws://127.0.0.1:{server.port}/ws/chat/{cid}?token={token}"
    return cid, headers, ws_url


async def get_json(address: str, headers: dict) -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        return (await client.get(address, headers=headers)).json()


async def frames_until(ws, *kinds, wait=30):
    frames = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), wait))
        frames.append(frame)
        if frame["type"] in kinds:
            return frames


async def test_tokens_arrive_in_order_and_complete(servers, settings):
    server = servers[0]
    cid, headers, ws_url = session(server, settings)
    async with websockets.connect(ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
        await ws.send(json.dumps({"type": "message", "content": "Что делать после ДТП?"}))
        frames = await frames_until(ws, "message")
    streamed = "".join(f["delta"] for f in frames if f["type"] == "token")
    stored = (await get_json(f"{server.url}{CHAT}/{cid}", headers))["messages"][-1]
    assert stored["content"] == streamed == frames[-1]["message"]["content"]
    assert len([f for f in frames if f["type"] == "token"]) > 10


async def test_a_socket_on_another_process_sees_the_stream(servers, settings):
    one, two = servers
    cid, headers, ws_url = session(one, settings)
    other_url = ws_url.replace(str(one.port), str(two.port))
    async with websockets.connect(ws_url) as a, websockets.connect(other_url) as b:
        await a.recv()
        await b.recv()
        await a.send(json.dumps({"type": "message", "content": "Вопрос с первого сервера"}))
        seen_a, seen_b = await asyncio.gather(
            frames_until(a, "message"), frames_until(b, "message")
        )
    text_a = "".join(f["delta"] for f in seen_a if f["type"] == "token")
    text_b = "".join(f["delta"] for f in seen_b if f["type"] == "token")
    assert text_a == text_b == seen_b[-1]["message"]["content"]
    assert [f["type"] for f in seen_b][:2] == ["message_received", "sources"]
    assert seen_a[-1] == seen_b[-1]


async def test_two_messages_at_once_are_answered_one_after_the_other(servers, settings):
    one, two = servers
    cid, headers, ws_url = session(one, settings)
    async with (
        websockets.connect(ws_url) as a,
        websockets.connect(ws_url.replace(str(one.port), str(two.port))) as b,
    ):
        await a.recv()
        await b.recv()
        await asyncio.gather(
            a.send(json.dumps({"type": "message", "content": "первый"})),
            b.send(json.dumps({"type": "message", "content": "второй"})),
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            conv = await get_json(f"{one.url}{CHAT}/{cid}", headers)
            if conv["messages_count"] == 4:
                break
            await asyncio.sleep(0.2)
    roles = [m["role"] for m in conv["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]


async def test_cancel_through_chatopenai_streaming(stub_server, openai_stub, settings):
    openai_stub.reset()
    openai_stub.state.mode = "slow"
    openai_stub.state.reply = " ".join(f"слово{i}" for i in range(1500))
    cid, headers, ws_url = session(stub_server, settings)
    async with websockets.connect(ws_url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "message", "content": "Расскажи подробно"}))
        await frames_until(ws, "token")
        await ws.send(json.dumps({"type": "cancel"}))
        frames = await frames_until(ws, "cancelled")
    final = next(f for f in frames if f["type"] == "message")["message"]
    assert final["status"] == "interrupted"
    stored = (await get_json(f"{stub_server.url}{CHAT}/{cid}", headers))["messages"]
    assert stored[-1]["status"] == "interrupted" and stored[-1]["content"] == final["content"]
    assert 0 < len(final["content"]) < len(openai_stub.state.reply)


async def test_disconnect_mid_stream_still_stores_the_whole_answer(
    stub_server, openai_stub, settings
):
    openai_stub.reset()
    openai_stub.state.mode = "slow"
    openai_stub.state.reply = " ".join(f"часть{i}" for i in range(60))
    cid, headers, ws_url = session(stub_server, settings)
    async with websockets.connect(ws_url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "message", "content": "Ответь длинно"}))
        await frames_until(ws, "token")
    # The socket is gone; the answer is finished and stored anyway.
    deadline = time.time() + 30
    while time.time() < deadline:
        messages = (await get_json(f"{stub_server.url}{CHAT}/{cid}", headers))["messages"]
        if messages[-1]["role"] == "assistant":
            break
        await asyncio.sleep(0.2)
    assert messages[-1]["content"] == openai_stub.state.reply
    assert messages[-1]["status"] == "complete" and messages[-1]["token_count"] == 18


def test_tokens_in_socket_urls_are_not_logged():
    import logging

    from advocata_chat.logs import RedactTokens

    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        "",
        0,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/ws/chat/abc?token=eyJ.secret.sig&user_id=1"),
        None,
    )
    RedactTokens().filter(record)
    assert "eyJ" not in record.getMessage() and "token=[redacted]&user_id=1" in record.getMessage()
