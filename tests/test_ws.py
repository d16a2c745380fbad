"""The chat WebSocket, in-process: every frame, every error path, cancel, fan-out."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from httpx_ws import WebSocketDisconnect, aconnect_ws
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from advocata_chat.auth import mint_token

CHAT = "/api/v1/chat/conversations"


async def new_conversation(client, headers, **body):
    return (await client.post(CHAT, json=body, headers=headers)).json()["id"]


def url(cid, token=None, **params):
    query = {"token": token, **params} if token else params
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"http://test/ws/chat/{cid}" + (f"?{qs}" if qs else "")


async def recv(ws, wait=20):
    return json.loads(await asyncio.wait_for(ws.receive_text(), wait))


async def until(ws, *kinds, wait=20):
    """Frames up to and including the first of `kinds`."""
    frames = []
    while True:
        frame = await recv(ws, wait)
        frames.append(frame)
        if frame["type"] in kinds:
            return frames


@pytest.fixture
def token(settings):
    def make(user):
        return mint_token(settings, user_id=user)

    return make


async def test_a_turn_streams_every_frame_in_order(make_client, auth, token, alice):
    async with make_client() as client:
        cid = await new_conversation(client, auth(alice))
        async with aconnect_ws(url(cid, token(alice)), client) as ws:
            assert await recv(ws) == {
                "type": "connected",
                "conversation_id": cid,
                "message": "Connected to chat",
                "message_id": None,  # no answer in progress to resume
            }
            await ws.send_text(
                json.dumps({"type": "message", "content": "Что делать после ДТП?", "use_rag": True})
            )
            frames = await until(ws, "message")
        kinds = [f["type"] for f in frames]
        assert kinds[0] == "message_received" and kinds[1] == "sources"
        assert kinds[2:-1] == ["token"] * (len(kinds) - 3) and len(kinds) > 10
        received = frames[0]["message"]
        assert received["role"] == "user" and received["content"] == "Что делать после ДТП?"
        final = frames[-1]
        streamed = "".join(f["delta"] for f in frames if f["type"] == "token")
        assert final["message"]["content"] == streamed and final["message"]["role"] == "assistant"
        stored = (await client.get(f"{CHAT}/{cid}", headers=auth(alice))).json()
        assert stored["messages"][-1]["content"] == streamed
        assert stored["messages"][0]["id"] == received["id"]
        assert final["conversation"] == {
            "total_tokens": stored["total_tokens"],
            "messages_count": stored["messages_count"],
        }
        assert final["message"]["token_count"] == stored["total_tokens"] == 0  # offline: unbilled


async def test_a_socket_that_only_listens_is_closed_when_its_token_expires(
    make_client, auth, settings, alice
):
    async with make_client() as client:
        cid = await new_conversation(client, auth(alice))
        short = mint_token(settings, user_id=alice, ttl_seconds=2)
        async with aconnect_ws(url(cid, short), client) as ws:
            assert (await recv(ws))["type"] == "connected"
            # The client sends nothing; the server speaks at the token's expiry.
            frame = await recv(ws, wait=15)
            assert frame == {"type": "error", "error": "Token has expired", "code": "unauthorized"}
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_text()
            assert closed.value.code == 4401


async def test_authentication_and_ownership_failures_close_with_codes(
    make_client, auth, token, settings, alice, bob
):
    async with make_client() as client:
        cid = await new_conversation(client, auth(alice))
        cases = [
            (url(cid), 4401, "unauthorized"),
            (url(cid, user_id=alice), 4401, "unauthorized"),  # the seed's ?user_id= alone
            (url(cid, "not-a-jwt"), 4401, "unauthorized"),
            (url(cid, mint_token(settings, user_id=alice, ttl_seconds=-5)), 4401, "unauthorized"),
            (url(cid, token(alice), user_id=bob), 4400, "user_mismatch"),
            (url(cid, token(bob)), 4404, "not_found"),
            (url(uuid.uuid4(), token(bob)), 4404, "not_found"),
            (url("not-a-uuid", token(bob)), 4404, "not_found"),
        ]
        for address, close_code, code in cases:
            async with aconnect_ws(address, client) as ws:
                frame = await recv(ws)
                assert frame["type"] == "error" and frame["code"] == code, address
                assert frame["error"]
                with pytest.raises(WebSocketDisconnect) as closed:
                    await ws.receive_text()
                assert closed.value.code == close_code, address
        # Someone else's conversation and a missing one look the same.
        frames = []
        for cid_ in (cid, str(uuid.uuid4())):
            async with aconnect_ws(url(cid_, token(bob)), client) as ws:
                frames.append(await recv(ws))
        assert (
            frames[0]
            == frames[1]
            == {"type": "error", "error": "Conversation not found", "code": "not_found"}
        )


async def test_token_in_header_and_matching_user_id_are_accepted(make_client, auth, token, alice):
    async with make_client() as client:
        cid = await new_conversation(client, auth(alice))
        async with aconnect_ws(url(cid), client, headers=auth(alice)) as ws:
            assert (await recv(ws))["type"] == "connected"
        async with aconnect_ws(url(cid, token(alice), user_id=alice), client) as ws:
            assert (await recv(ws))["type"] == "connected"


async def test_bad_frames_get_error_frames_and_the_socket_stays_usable(
    make_client, auth, token, alice
):
    async with make_client(max_ws_frame_bytes=2000, max_ws_frames_per_second=0) as client:
        cid = await new_conversation(client, auth(alice))
        async with aconnect_ws(url(cid, token(alice)), client) as ws:
            await recv(ws)
            cases = [
                ("{not json", "invalid_json"),
                ("[1, 2]", "invalid_frame"),
                (json.dumps({"type": "dance"}), "unknown_frame"),
                (json.dumps({"content": "без типа"}), "unknown_frame"),
                (json.dumps({"type": "message"}), "validation_error"),
                (json.dumps({"type": "message", "content": "   "}), "validation_error"),
                (
                    json.dumps({"type": "message", "content": "x", "use_rag": "yes"}),
                    "validation_error",
                ),
                (json.dumps({"type": "message", "content": "я" * 3000}), "frame_too_large"),
            ]
            for raw, code in cases:
                await ws.send_text(raw)
                frame = await recv(ws)
                assert frame["type"] == "error" and frame["code"] == code, raw
            await ws.send_bytes(b"\xff\xfe")
            assert (await recv(ws))["code"] == "invalid_json"
            await ws.send_text(json.dumps({"type": "ping"}))
            assert await recv(ws) == {"type": "pong"}
            await ws.send_text(json.dumps({"type": "message", "content": "Всё ещё работает?"}))
            frames = await until(ws, "message")
            assert frames[-1]["message"]["role"] == "assistant"
        conv = (await client.get(f"{CHAT}/{cid}", headers=auth(alice))).json()
        assert conv["messages_count"] == 2  # nothing from the bad frames was stored


async def test_frames_that_break_the_json_parser_get_error_frames(make_client, auth, token, alice):
    # Under MAX_WS_FRAME_BYTES, yet json.loads raises ValueError (past Python's 4300-digit
    # integer limit) or RecursionError (nesting): both used to drop the socket.
    async with make_client(max_ws_frames_per_second=0) as client:
        cid = await new_conversation(client, auth(alice))
        async with aconnect_ws(url(cid, token(alice)), client) as ws:
            await recv(ws)
            for raw in (
                '{"type": "ping", "n": ' + "9" * 5000 + "}",
                "[" * 20_000 + "]" * 20_000,
                '{"a": ' * 8_000 + "1" + "}" * 8_000,
            ):
                await ws.send_text(raw)
                frame = await recv(ws)
                assert frame["type"] == "error" and frame["code"] == "invalid_json", raw[:40]
            await ws.send_text(json.dumps({"type": "ping"}))
            assert await recv(ws) == {"type": "pong"}


async def test_reply_answers_the_pending_message(make_client, auth, token, alice):
    async with make_client() as client:
        cid = await new_conversation(
            client, auth(alice), initial_message="Меня сократили, что делать?"
        )
        async with aconnect_ws(url(cid, token(alice)), client) as ws:
            await recv(ws)
            await ws.send_text(json.dumps({"type": "reply"}))
            frames = await until(ws, "message")
            assert frames[0]["message"]["content"] == "Меня сократили, что делать?"
            await ws.send_text(json.dumps({"type": "reply"}))
            frames = await until(ws, "error")
            if not any(f["type"] == "title" for f in frames):  # the two race; both must come
                frames += await until(ws, "title")
            # The untitled conversation was named after its first answer.
            assert {"type": "title", "title": "Меня сократили, что делать"} in frames
            assert next(f for f in frames if f["type"] == "error")["code"] == "nothing_to_answer"


async def test_two_tabs_both_receive_the_stream(make_client, auth, token, alice):
    async with make_client() as client:
        cid = await new_conversation(client, auth(alice))
        async with (
            aconnect_ws(url(cid, token(alice)), client) as one,
            aconnect_ws(url(cid, token(alice)), client) as two,
        ):
            await recv(one)
            await recv(two)
            await one.send_text(
                json.dumps({"type": "message", "content": "Вопрос из первой вкладки"})
            )
            first, second = await asyncio.gather(until(one, "message"), until(two, "message"))
        assert first == second
        assert first[0]["message"]["content"] == "Вопрос из первой вкладки"


LONG_REPLY = " ".join(f"слово{i}" for i in range(1500))


async def cancelled_mid_answer(client, cid: str, token: str) -> dict:
    """Ask, cancel after the first token; the stored message the `cancelled` frame follows."""
    async with aconnect_ws(url(cid, token), client) as ws:
        await recv(ws)
        await ws.send_text(json.dumps({"type": "message", "content": "Расскажи подробно"}))
        await until(ws, "token")
        await ws.send_text(json.dumps({"type": "cancel"}))
        frames = await until(ws, "cancelled")
    return next(f for f in frames if f["type"] == "message")["message"]


async def test_cancel_stores_the_partial_answer_as_interrupted(
    stub_client, stub, auth, token, alice
):
    stub.state.mode = "slow"
    stub.state.reply = LONG_REPLY
    async with stub_client() as client:
        cid = await new_conversation(client, auth(alice))
        final = await cancelled_mid_answer(client, cid, token(alice))
        assert final["status"] == "interrupted"
        assert 0 < len(final["content"]) < len(LONG_REPLY)
        stored = (await client.get(f"{CHAT}/{cid}", headers=auth(alice))).json()["messages"]
        assert stored[-1]["status"] == "interrupted"
        assert stored[-1]["content"] == final["content"]


class SwallowsACancel(BaseChatModel):
    """Streams words and, as the HTTP client did under load, swallows the first
    cancellation that interrupts it and streams on."""

    @property
    def _llm_type(self) -> str:
        return "swallows-a-cancel"

    def _generate(self, *args, **kwargs):
        raise NotImplementedError("streaming only")

    async def _astream(self, *args, **kwargs):
        swallowed = False
        for i, word in enumerate(LONG_REPLY.split(" ")):
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed = True
            delta = word if i == 0 else f" {word}"
            yield ChatGenerationChunk(message=AIMessageChunk(content=delta))


async def test_cancel_holds_when_the_model_client_swallows_it(make_client, auth, token, alice):
    async with make_client(llm=SwallowsACancel()) as client:
        cid = await new_conversation(client, auth(alice))
        final = await cancelled_mid_answer(client, cid, token(alice))
        assert final["status"] == "interrupted"
        assert 0 < len(final["content"]) < len(LONG_REPLY)


async def test_model_failure_mid_stream_sends_error_and_socket_survives(
    stub_client, stub, auth, token, alice
):
    stub.state.mode = "drop"
    async with stub_client() as client:
        cid = await new_conversation(client, auth(alice))
        async with aconnect_ws(url(cid, token(alice)), client) as ws:
            await recv(ws)
            await ws.send_text(json.dumps({"type": "message", "content": "раз два три четыре"}))
            frames = await until(ws, "error")
            assert frames[-1]["code"] == "model_error" and any(f["type"] == "token" for f in frames)
            stub.state.mode = "ok"
            await ws.send_text(json.dumps({"type": "message", "content": "ещё раз"}))
            frames = await until(ws, "message", "error")
            assert frames[-1]["type"] == "message"
        messages = (await client.get(f"{CHAT}/{cid}", headers=auth(alice))).json()["messages"]
        assert [m["status"] for m in messages] == ["complete", "failed", "complete", "complete"]
        assert messages[1]["content"] == "Ответ модели на"


async def test_streamed_and_rest_answers_count_the_same_tokens(
    stub_client, stub, auth, token, alice
):
    async with stub_client() as client:
        h = auth(alice)
        cid = await new_conversation(client, h)
        rest = await client.post(
            f"{CHAT}/{cid}/messages", json={"message_content": "вопрос"}, headers=h
        )
        async with aconnect_ws(url(cid, token(alice)), client) as ws:
            await recv(ws)
            await ws.send_text(json.dumps({"type": "message", "content": "вопрос"}))
            frames = await until(ws, "message")
        assert rest.json()["messages"][-1]["token_count"] == 18
        assert frames[-1]["message"]["token_count"] == 18


async def test_sse_streams_the_same_events(make_client, auth, alice):
    async with make_client() as client:
        h = auth(alice)
        cid = await new_conversation(client, h)
        events = []
        async with client.stream(
            "POST",
            f"{CHAT}/{cid}/messages",
            json={"message_content": "Что такое ОСАГО?"},
            headers={**h, "Accept": "text/event-stream"},
        ) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith(
                "text/event-stream"
            )
            name = None
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    assert data["type"] == name
                    events.append(data)
        kinds = [e["type"] for e in events]
        assert kinds[:2] == ["message_received", "sources"] and kinds[-1] == "message"
        streamed = "".join(e["delta"] for e in events if e["type"] == "token")
        assert streamed == events[-1]["message"]["content"]
        r = await client.post(
            f"{CHAT}/{uuid.uuid4()}/messages",
            json={"message_content": "x"},
            headers={**h, "Accept": "text/event-stream"},
        )
        assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_socket_limits_frames_per_second_and_sockets_per_user(
    make_client, auth, token, alice
):
    async with make_client(max_ws_frames_per_second=3, max_sockets_per_user=1) as client:
        now = time.time()
        client.app.state.runtime.clock = lambda: now  # no time passes: the burst is all there is
        cid = await new_conversation(client, auth(alice))
        async with aconnect_ws(url(cid, token(alice)), client) as ws:
            await recv(ws)
            for _ in range(6):
                await ws.send_text(json.dumps({"type": "ping"}))
            replies = [(await recv(ws)).get("code", "pong") for _ in range(6)]
            assert replies == ["pong"] * 3 + ["rate_limited"] * 3
            async with aconnect_ws(url(cid, token(alice)), client) as second:
                frame = await recv(second)
                assert frame["code"] == "too_many_sockets"
                with pytest.raises(WebSocketDisconnect) as closed:
                    await second.receive_text()
                assert closed.value.code == 4429
        # Closing the first socket frees the slot.
        async with aconnect_ws(url(cid, token(alice)), client) as ws:
            assert (await recv(ws))["type"] == "connected"
