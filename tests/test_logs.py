"""Structured logs with request ids; no secrets or message content at INFO."""

from __future__ import annotations

import json
import logging

from advocata_chat.logs import JsonFormatter, request_id

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


async def test_no_token_or_message_content_is_logged_at_info(
    make_client, auth, settings, alice, caplog
):
    secret_text = "Мой паспорт 36 09 512877, помогите"
    h = auth(alice)
    with caplog.at_level(logging.INFO):
        async with make_client(ws=False) as client:
            cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
            await client.post(
                f"{CONV}/{cid}/messages", json={"message_content": secret_text}, headers=h
            )
            await client.post(
                "/api/v1/documents", headers=h, files={"file": ("p.txt", secret_text.encode())}
            )
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    token = h["Authorization"].split()[1]
    assert "36 09 512877" not in logged and token not in logged
