"""The token quota holds under concurrency: each turn reserves an estimate before the model
is called and settles to what the provider billed when its answer is stored.

The model here is the OpenAI-protocol stub, which reports usage as a provider does.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from sqlalchemy import text

from advocata_chat import limits

CONV = "/api/v1/chat/conversations"
BILLED = (400, 120)  # prompt and completion tokens the stub reports for each answer
TURN = sum(BILLED)


async def new_conversations(client, h, n):
    return [
        (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"] for _ in range(n)
    ]


async def test_concurrent_sends_cannot_overshoot_the_quota(stub_client, stub, auth, alice):
    """The review's case: TOKEN_QUOTA=1000, eight sends at once on eight conversations. They
    all used to pass the check before any answer was stored, and spent 4,160 tokens."""
    stub.state.usage = BILLED
    stub.state.gate = threading.Event()  # answers wait until every send has been admitted or not
    h = auth(alice)
    async with stub_client(token_quota=1000, ws=False) as client:
        cids = await new_conversations(client, h, 8)
        sends = [
            asyncio.create_task(
                client.post(f"{CONV}/{cid}/messages", json={"message_content": "вопрос"}, headers=h)
            )
            for cid in cids
        ]

        def at_the_model() -> int:
            return len([q for q in stub.state.requests if "messages" in q])

        while sum(s.done() for s in sends) + at_the_model() < len(sends):  # noqa: ASYNC110 (the stub runs in another thread)
            await asyncio.sleep(0.01)
        stub.state.gate.set()
        replies = await asyncio.gather(*sends)

        codes = sorted(r.status_code for r in replies)
        assert codes == [200] + [429] * 7, codes
        refused = [r.json() for r in replies if r.status_code == 429]
        assert {r["code"] for r in refused} == {"quota_exceeded"}
        assert all(r["detail"]["reserved"] > 0 for r in refused)  # held by the one in progress
        stats = (await client.get("/api/v1/chat/stats/tokens", headers=h)).json()
        assert stats["quota"]["used"] == stats["total_tokens"] == TURN
        for cid, r in zip(cids, replies, strict=True):
            conv = (await client.get(f"{CONV}/{cid}", headers=h)).json()
            assert conv["messages_count"] == (2 if r.status_code == 200 else 0)  # nothing stored

        # Settled: the reservation is gone and the next send is admitted on what was billed.
        r = await client.post(
            f"{CONV}/{cids[0]}/messages", json={"message_content": "ещё"}, headers=h
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            f"{CONV}/{cids[0]}/messages", json={"message_content": "ещё"}, headers=h
        )
        assert r.status_code == 429 and r.json()["detail"]["used"] == 2 * TURN


async def test_a_turn_that_fails_before_answering_releases_its_reservation(
    stub_client, stub, auth, alice
):
    stub.state.fail_times = 1  # the provider refuses once, billing nothing
    h = auth(alice)
    async with stub_client(token_quota=1000, ws=False) as client:
        [cid] = await new_conversations(client, h, 1)
        r = await client.post(f"{CONV}/{cid}/messages", json={"message_content": "раз"}, headers=h)
        assert r.status_code == 502
        r = await client.post(f"{CONV}/{cid}/reply", headers=h)
        assert r.status_code == 200, r.text  # not refused by a reservation left behind
        assert await held(client, alice) == 0


async def held(client, user_id) -> int:
    rt = client.app.state.runtime
    async with rt.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT coalesce(sum(tokens), 0) FROM token_reservations WHERE user_id = :u"),
            {"u": user_id},
        )


async def test_a_reservation_settled_at_zero_tokens_holds_nothing(stub_client, make_settings):
    """A turn whose provider billed nothing (the offline model, say) settles to 0."""
    settings = make_settings(token_quota=1000)
    user = uuid.uuid4()
    async with stub_client(ws=False) as client:
        sessions = client.app.state.runtime.sessions
        first = await limits.reserve(sessions, settings, user_id=user, tokens=5000)
        with pytest.raises(limits.QuotaExceeded) as refused:
            await limits.reserve(sessions, settings, user_id=user, tokens=10)
        assert refused.value.detail == {
            "used": 0,
            "reserved": 5000,
            "quota": 1000,
            "period_seconds": 86400,
        }
        async with sessions.begin() as s:  # what _store_answer does with a 0-token answer
            await limits.settle(s, first)
        assert await held(client, user) == 0
        second = await limits.reserve(sessions, settings, user_id=user, tokens=10)
        assert second is not None and await held(client, user) == 10


async def test_a_reservation_left_by_a_crashed_turn_lapses(stub_client, make_settings):
    settings = make_settings(token_quota=1000)
    user = uuid.uuid4()
    async with stub_client(ws=False) as client:
        rt = client.app.state.runtime
        lost = await limits.reserve(rt.sessions, settings, user_id=user, tokens=5000)
        # The process died mid-turn; its reservation reaches its expiry.
        async with rt.engine.begin() as conn:
            await conn.execute(
                text("UPDATE token_reservations SET expires_at = now() WHERE id = :id"),
                {"id": lost.id},
            )
        again = await limits.reserve(rt.sessions, settings, user_id=user, tokens=10)
        assert again is not None and await held(client, user) == 10  # the lapsed one is gone


def test_the_estimate_covers_a_full_answer_history_and_context(make_settings):
    s = make_settings()
    plain = limits.turn_estimate(s, question="вопрос", use_rag=False)
    with_rag = limits.turn_estimate(s, question="вопрос", use_rag=True)
    assert plain >= s.openai_max_tokens + s.history_max_tokens
    assert with_rag == plain + s.rag_max_context_tokens
    assert limits.turn_estimate(s, question=None, use_rag=False) > s.openai_max_tokens
