"""The conversation REST API: the seed's five endpoints plus rename, archive and delete."""

from __future__ import annotations

BASE = "/api/v1/chat/conversations"


async def create(client, headers, **body):
    r = await client.post(BASE, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_create_returns_the_seed_shape(client, auth, alice):
    conv = await create(
        client,
        auth(alice),
        initial_message="Помогите разобраться в вопросе по ДТП",
        title="Консультация по ДТП",
    )
    assert conv["user_id"] == str(alice)
    assert conv["title"] == "Консультация по ДТП"
    assert conv["status"] == "active"
    assert conv["total_tokens"] == 0
    assert conv["messages_count"] == 1
    [msg] = conv["messages"]
    assert msg["role"] == "user"
    assert msg["content"] == "Помогите разобраться в вопросе по ДТП"
    assert msg["token_count"] is None
    assert msg["referenced_documents"] == []
    assert msg["conversation_id"] == conv["id"]
    assert conv["created_at"].endswith("Z") and conv["last_message_at"] == msg["created_at"]


async def test_create_without_a_message_or_title(client, auth, alice):
    conv = await create(client, auth(alice))
    assert conv["messages"] == [] and conv["messages_count"] == 0 and conv["title"] is None


async def test_pending_message_is_answered_by_reply_then_chat_continues(client, auth, alice):
    h = auth(alice)
    conv = await create(client, h, initial_message="Что делать после ДТП?")
    r = await client.post(f"{BASE}/{conv['id']}/reply", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    answer = body["messages"][1]
    assert "не подключена" in answer["content"] and "Что делать после ДТП?" in answer["content"]
    # The offline model bills nothing (tests/test_token_accounting.py).
    assert answer["token_count"] == 0 and answer["status"] == "complete"

    # Nothing is pending any more.
    r = await client.post(f"{BASE}/{conv['id']}/reply", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "nothing_to_answer"

    r = await client.post(
        f"{BASE}/{conv['id']}/messages",
        json={"message_content": "Могу ли я получить компенсацию?", "use_rag": True},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant"]
    assert body["messages_count"] == 4
    assert body["total_tokens"] == sum(m["token_count"] or 0 for m in body["messages"])

    stats = (await client.get("/api/v1/chat/stats/tokens", headers=h)).json()
    assert stats == {
        "user_id": str(alice),
        "total_tokens": body["total_tokens"],
        "total_conversations": 1,
        "active_conversations": 1,
        "archived_conversations": 0,
        "deleted_conversations": 0,
        "quota": {"limit": 2_000_000, "used": body["total_tokens"], "period_seconds": 86400},
    }


async def test_get_with_and_without_messages(client, auth, alice):
    h = auth(alice)
    conv = await create(client, h, initial_message="Вопрос")
    full = (await client.get(f"{BASE}/{conv['id']}", headers=h)).json()
    assert len(full["messages"]) == 1
    bare = await client.get(f"{BASE}/{conv['id']}", params={"include_messages": False}, headers=h)
    assert bare.status_code == 200
    assert bare.json()["messages"] == [] and bare.json()["messages_count"] == 1


async def test_list_pagination_edges_and_recency_order(client, auth, alice):
    h = auth(alice)
    ids = [(await create(client, h, initial_message=f"вопрос {i}"))["id"] for i in range(5)]
    newest_first = list(reversed(ids))

    page = (await client.get(BASE, params={"limit": 2}, headers=h)).json()
    assert [c["id"] for c in page["items"]] == newest_first[:2]
    assert (page["total"], page["limit"], page["offset"], page["has_more"]) == (5, 2, 0, True)
    assert page["items"][0]["last_message_preview"] == "вопрос 4"

    page = (await client.get(BASE, params={"limit": 2, "offset": 4}, headers=h)).json()
    assert [c["id"] for c in page["items"]] == newest_first[4:]
    assert page["has_more"] is False

    page = (await client.get(BASE, params={"limit": 100, "offset": 5}, headers=h)).json()
    assert page["items"] == [] and page["total"] == 5 and page["has_more"] is False

    page = (await client.get(BASE, params={"limit": 5}, headers=h)).json()
    assert len(page["items"]) == 5 and page["has_more"] is False


async def test_status_filter_and_deleted_hidden_by_default(client, auth, alice):
    h = auth(alice)
    a, b, c = [(await create(client, h, title=t))["id"] for t in ("a", "b", "c")]
    r = await client.patch(f"{BASE}/{b}", json={"status": "archived"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "archived"
    assert (await client.delete(f"{BASE}/{c}", headers=h)).status_code == 204

    def ids(r):
        return {i["id"] for i in r.json()["items"]}

    assert ids(await client.get(BASE, headers=h)) == {a, b}
    assert ids(await client.get(BASE, params={"status": "active"}, headers=h)) == {a}
    assert ids(await client.get(BASE, params={"status": "archived"}, headers=h)) == {b}
    assert ids(await client.get(BASE, params={"status": "deleted"}, headers=h)) == {c}
    # A deleted conversation can still be read by its owner, and says so.
    assert (await client.get(f"{BASE}/{c}", headers=h)).json()["status"] == "deleted"
    # Deleting twice is fine.
    assert (await client.delete(f"{BASE}/{c}", headers=h)).status_code == 204
    stats = (await client.get("/api/v1/chat/stats/tokens", headers=h)).json()
    assert (stats["active_conversations"], stats["archived_conversations"]) == (1, 1)
    assert stats["deleted_conversations"] == 1 and stats["total_conversations"] == 3


async def test_rename_archive_and_unarchive(client, auth, alice):
    h = auth(alice)
    cid = (await create(client, h, title="старое"))["id"]
    r = await client.patch(f"{BASE}/{cid}", json={"title": "Аренда квартиры"}, headers=h)
    assert r.status_code == 200 and r.json()["title"] == "Аренда квартиры"

    await client.patch(f"{BASE}/{cid}", json={"status": "archived"}, headers=h)
    r = await client.post(f"{BASE}/{cid}/messages", json={"message_content": "ещё"}, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "conversation_not_active"
    # Nothing was stored by the refused send.
    assert (await client.get(f"{BASE}/{cid}", headers=h)).json()["messages_count"] == 0

    await client.patch(f"{BASE}/{cid}", json={"status": "active"}, headers=h)
    r = await client.post(f"{BASE}/{cid}/messages", json={"message_content": "ещё"}, headers=h)
    assert r.status_code == 200 and r.json()["messages_count"] == 2
