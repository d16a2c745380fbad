"""Turns through the real ChatOpenAI client against the OpenAI-protocol stub server."""

from __future__ import annotations

import asyncio

import pytest

BASE = "/api/v1/chat/conversations"


def openai_settings(stub, **extra):
    return {
        "openai_base_url": stub.base_url,
        "openai_model": "stub-model",
        "openai_max_retries": 0,
        **extra,
    }


@pytest.fixture
def make_client(make_client, openai_database_url):
    """These tests use the database whose chunk index belongs to the stub's embedder."""

    def make(**overrides):
        return make_client(database_url=openai_database_url, **overrides)

    return make


async def new_conversation(client, headers, text="Что делать после ДТП?"):
    # A title keeps the title chain out of the requests these tests inspect.
    r = await client.post(BASE, json={"initial_message": text, "title": "t"}, headers=headers)
    return r.json()["id"]


async def test_answer_and_token_count_come_from_the_provider(make_client, stub, auth, alice):
    h = auth(alice)
    async with make_client(**openai_settings(stub)) as client:
        cid = await new_conversation(client, h)
        r = await client.post(f"{BASE}/{cid}/reply", headers=h)
        assert r.status_code == 200, r.text
        answer = r.json()["messages"][-1]
        assert answer["content"] == "Ответ модели на вопрос: Что делать после ДТП?"
        assert answer["token_count"] == 18  # the stub reports 11 prompt + 7 completion
        assert r.json()["total_tokens"] == 18

        sent = stub.state.requests[-1]
        assert sent["model"] == "stub-model" and sent["stream"] is True
        assert sent["stream_options"] == {"include_usage": True}
        assert (
            sent["messages"][0]["role"] == "system" and "Advocata" in sent["messages"][0]["content"]
        )
        assert sent["messages"][-1] == {"role": "user", "content": "Что делать после ДТП?"}


async def test_tiktoken_counts_when_the_provider_reports_no_usage(make_client, stub, auth, alice):
    stub.state.report_usage = False
    h = auth(alice)
    async with make_client(**openai_settings(stub)) as client:
        cid = await new_conversation(client, h)
        answer = (await client.post(f"{BASE}/{cid}/reply", headers=h)).json()["messages"][-1]
        # The system prompt alone is well over 100 tokens.
        assert answer["token_count"] > 150


async def test_history_goes_to_the_model_in_order(make_client, stub, auth, alice):
    h = auth(alice)
    async with make_client(**openai_settings(stub)) as client:
        cid = await new_conversation(client, h, "первый")
        await client.post(f"{BASE}/{cid}/reply", headers=h)
        await client.post(f"{BASE}/{cid}/messages", json={"message_content": "второй"}, headers=h)
        sent = [(m["role"], m["content"]) for m in stub.state.requests[-1]["messages"][1:]]
        assert sent == [
            ("user", "первый"),
            ("assistant", "Ответ модели на вопрос: первый"),
            ("user", "второй"),
        ]


async def test_history_window_is_bounded(make_client, stub, auth, alice):
    h = auth(alice)
    async with make_client(**openai_settings(stub, history_max_messages=3)) as client:
        cid = await new_conversation(client, h, "вопрос 0")
        await client.post(f"{BASE}/{cid}/reply", headers=h)
        for i in range(1, 4):
            await client.post(
                f"{BASE}/{cid}/messages", json={"message_content": f"вопрос {i}"}, headers=h
            )
        sent = stub.state.requests[-1]["messages"]
        # system + 3 history messages + the question
        assert len(sent) == 5
        assert sent[-1]["content"] == "вопрос 3" and sent[1]["content"].endswith("вопрос 1")


async def test_model_failure_keeps_the_message_and_retry_works(make_client, stub, auth, alice):
    h = auth(alice)
    async with make_client(**openai_settings(stub)) as client:
        cid = await new_conversation(client, h)
        for mode, status in (("500", 502), ("429", 503)):
            stub.state.mode = mode
            r = await client.post(
                f"{BASE}/{cid}/messages",
                json={"message_content": "Сколько ждать выплату?"},
                headers=h,
            )
            assert r.status_code == status, r.text
            body = r.json()
            assert body["code"] in ("model_error", "model_unavailable")
            assert "saved" in body["error"] and body["detail"]["retry"].endswith(f"{cid}/reply")

        conv = (await client.get(f"{BASE}/{cid}", headers=h)).json()
        assert [m["role"] for m in conv["messages"]] == ["user", "user", "user"]
        assert conv["messages"][-1]["content"] == "Сколько ждать выплату?"
        assert conv["total_tokens"] == 0

        stub.state.mode = "ok"
        r = await client.post(f"{BASE}/{cid}/reply", headers=h)
        assert r.status_code == 200
        assert r.json()["messages"][-1]["content"].endswith("Сколько ждать выплату?")


async def test_unreachable_model_is_503(make_client, auth, alice):
    h = auth(alice)
    dead = {
        "openai_base_url": "http://127.0.0.1:9/v1",
        "openai_max_retries": 0,
        "openai_timeout_seconds": 2,
    }
    async with make_client(**dead) as client:
        cid = await new_conversation(client, h)
        r = await client.post(f"{BASE}/{cid}/reply", headers=h)
        assert r.status_code == 503 and r.json()["code"] == "model_unavailable"
        # The lease was released: the next attempt is not told the conversation is busy.
        r = await client.post(f"{BASE}/{cid}/reply", headers=h)
        assert r.status_code == 503


async def test_broken_stream_keeps_the_partial_answer_marked_failed(make_client, stub, auth, alice):
    stub.state.mode = "drop"
    h = auth(alice)
    async with make_client(**openai_settings(stub)) as client:
        cid = await new_conversation(client, h, "раз два три четыре пять")
        r = await client.post(f"{BASE}/{cid}/reply", headers=h)
        assert r.status_code == 502
        conv = (await client.get(f"{BASE}/{cid}", headers=h)).json()
        partial = conv["messages"][-1]
        assert partial["role"] == "assistant" and partial["status"] == "failed"
        assert partial["content"] == "Ответ модели на"
        assert conv["total_tokens"] == partial["token_count"] > 0


async def test_concurrent_sends_are_answered_one_after_the_other(make_client, stub, auth, alice):
    stub.state.delay = 0.3
    h = auth(alice)
    async with make_client(**openai_settings(stub)) as client:
        cid = (await client.post(BASE, json={"title": "t"}, headers=h)).json()["id"]

        async def send(text):
            return await client.post(
                f"{BASE}/{cid}/messages", json={"message_content": text}, headers=h
            )

        r1, r2 = await asyncio.gather(send("А"), send("Б"))
        assert r1.status_code == r2.status_code == 200
        msgs = (await client.get(f"{BASE}/{cid}", headers=h)).json()["messages"]
        roles = [m["role"] for m in msgs]
        assert roles == ["user", "assistant", "user", "assistant"]
        # Each answer follows its own question, and the second turn saw the first answer.
        assert msgs[1]["content"].endswith(msgs[0]["content"])
        assert msgs[3]["content"].endswith(msgs[2]["content"])
        second_prompt = stub.state.requests[-1]["messages"]
        assert second_prompt[2]["role"] == "assistant"
