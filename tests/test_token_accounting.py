"""Token accounting: only tokens a provider billed count, in messages, stats and the quota."""

from __future__ import annotations

from tests.test_documents import CONTRACT, upload

CHAT = "/api/v1/chat"
CONV = f"{CHAT}/conversations"


async def send(client, headers, cid, text):
    return await client.post(
        f"{CONV}/{cid}/messages", json={"message_content": text, "use_rag": True}, headers=headers
    )


async def test_offline_answers_bill_nothing_and_leave_the_quota_alone(make_client, auth, alice):
    h = auth(alice)
    # A quota of one token: a single charged answer would spend it.
    async with make_client(token_quota=1, ws=False) as client:
        await upload(client, h, "contract.txt", CONTRACT.encode())
        cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
        for question in ("Сколько стоят работы по договору подряда?", "Какой аванс по договору?"):
            r = await send(client, h, cid, question)
            assert r.status_code == 200, r.text
            answer = r.json()["messages"][-1]
            # A real extractive answer (a prompt of thousands of tokens), billed 0.
            assert answer["citations"] and answer["token_count"] == 0
        assert r.json()["total_tokens"] == 0
        stats = (await client.get(f"{CHAT}/stats/tokens", headers=h)).json()
        assert stats["total_tokens"] == 0 and stats["quota"]["used"] == 0


async def test_provider_usage_is_charged_to_the_message_stats_and_quota(stub_client, auth, alice):
    h = auth(alice)
    # The stub bills 18 tokens per answer (11 prompt + 7 completion): two fit in 20, not three.
    async with stub_client(token_quota=20, ws=False) as client:
        cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
        first = await send(client, h, cid, "раз")
        assert first.status_code == 200 and first.json()["messages"][-1]["token_count"] == 18
        stats = (await client.get(f"{CHAT}/stats/tokens", headers=h)).json()
        assert stats["total_tokens"] == 18 and stats["quota"]["used"] == 18
        second = await send(client, h, cid, "два")
        assert second.status_code == 200 and second.json()["total_tokens"] == 36
        third = await send(client, h, cid, "три")
        assert third.status_code == 429 and third.json()["code"] == "quota_exceeded"
        assert third.json()["detail"]["used"] == 36
