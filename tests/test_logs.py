"""Structured logs with request ids; no secrets or message content at INFO."""

from __future__ import annotations

import json
import logging
import time
import uuid

import httpx
import websockets

from advocata_chat.auth import mint_token
from advocata_chat.logs import JsonFormatter, request_id
from tests.server import Server

CONV = "/api/v1/chat/conversations"


async def test_request_ids_are_echoed_or_made(client, auth, alice):
    r = await client.get(CONV, headers={**auth(alice), "X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get(CONV, headers={**auth(alice), "X-Request-ID": "bad id\n!"})
    assert len(r.headers["x-request-id"]) == 32  # replaced by a fresh one


def test_json_lines_carry_the_request_id():
    token = request_id.set("req-42")
    try:
        record = logging.LogRecord(
            "advocata_chat.x", logging.INFO, "", 0, "hello %s", ("you",), None
        )
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["msg"] == "hello you" and line["request_id"] == "req-42"
    assert line["level"] == "info" and line["logger"] == "advocata_chat.x"


def wait_for(server: Server, *needles: str, timeout: float = 30) -> str:
    """The server's log once it holds every needle (lines are written as things happen)."""
    deadline = time.monotonic() + timeout
    while True:
        text = server.logs()
        if all(n in text for n in needles) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


async def test_no_token_or_message_content_in_the_real_servers_log(database_url, settings):
    """`advocata-chat serve` at LOG_LEVEL=info, read from its own stderr: the access and
    connection lines are there, tokens and message or document text are not, however the
    token's query parameter name is spelled (`?%74oken=` authenticates like `?token=`)."""
    secret = "Мой паспорт 36 09 512877, помогите"
    server = Server(database_url, LOG_LEVEL="info", LOG_FORMAT="json").wait_ready()
    try:
        user = uuid.uuid4()
        jwt_ = mint_token(settings, user_id=user)
        h = {"Authorization": f"Bearer {jwt_}"}
        async with httpx.AsyncClient(base_url=server.url) as client:
            cid = (await client.post(CONV, json={"initial_message": secret}, headers=h)).json()[
                "id"
            ]
            r = await client.post(
                f"{CONV}/{cid}/messages", json={"message_content": secret}, headers=h
            )
            assert r.status_code == 200, r.text
            r = await client.post(
                "/api/v1/documents", headers=h, files={"file": ("p.txt", secret.encode())}
            )
            assert r.status_code == 201, r.text
            # A token in a REST query string authenticates nothing, and is still not logged.
            r = await client.get(CONV, params={"token": jwt_, "access_token": jwt_})
            assert r.status_code == 401
        spellings = ["token", "%74oken", "to%6Ben", "%74%6F%6B%65%6E"]
        for name in spellings:
            address = f"ws://127.0.0.1:{server.port}/ws/chat/{cid}?{name}={jwt_}"
            async with websockets.connect(address) as ws:
                assert json.loads(await ws.recv())["type"] == "connected", name
                await ws.send(json.dumps({"type": "message", "content": secret, "use_rag": False}))
                while json.loads(await ws.recv())["type"] != "message":
                    pass
        lines = [f"WebSocket /ws/chat/{cid}?{name}=[redacted]" for name in spellings]
        log = wait_for(server, *lines, f"POST {CONV}/{cid}/messages HTTP/1.1")
    finally:
        server.stop()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    logged = "\n".join(r["msg"] + r.get("exc", "") for r in records)
    assert {"uvicorn.access", "uvicorn.error"} <= {r["logger"] for r in records}
    for line in lines:  # the lines that carried the token are there, redacted
        assert line in logged, line
    assert f"GET {CONV}?token=[redacted]&access_token=[redacted]" in logged
    assert jwt_ not in log and jwt_.split(".")[2] not in log
    assert "36 09 512877" not in log and "паспорт" not in log
