"""Benchmark 5: how the cost of a turn grows with the length of the conversation.

    python -m bench.history [--turns 30]

Conversations are seeded with 10, 100 and 1000 earlier messages; turns on them are
interleaved (one of each length in turn, so noise hits all alike), over REST and WebSocket,
with the zero-latency model and no RAG. The prompt's history is bounded
(HISTORY_MAX_MESSAGES / HISTORY_MAX_TOKENS); the REST reply, by the seed contract, returns
the whole conversation, so it is reported separately from the WebSocket turn.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import httpx
import psycopg
import websockets

from advocata_chat import db
from bench.common import Server, fresh_database, median, pct, run, table, token_for

LENGTHS = (10, 100, 1000)
SEED = """
INSERT INTO messages (id, conversation_id, role, content, status, token_count, created_at,
                      referenced_documents, citations)
SELECT gen_random_uuid(), %(c)s, CASE WHEN g %% 2 = 1 THEN 'user' ELSE 'assistant' END,
       repeat('Подрядчик нарушил срок работ по договору, какая неустойка положена? ', 4),
       'complete', 60, now(), '[]', '[]'
FROM generate_series(1, %(n)s) AS g
"""


async def seed(url: str, per_length: int) -> dict[int, list[tuple[uuid.UUID, uuid.UUID]]]:
    out: dict[int, list] = {}
    async with await psycopg.AsyncConnection.connect(db.psycopg_conninfo(url)) as conn:
        for n in LENGTHS:
            out[n] = []
            for _ in range(per_length):
                cid, user = uuid.uuid4(), uuid.uuid4()
                await conn.execute(
                    "INSERT INTO conversations (id, user_id, title, status, total_tokens,"
                    " messages_count, created_at, updated_at, last_message_at) VALUES"
                    " (%s, %s, 'bench', 'active', 0, %s, now(), now(), now())",
                    (cid, user, n),
                )
                await conn.execute(SEED, {"c": cid, "n": n})
                out[n].append((cid, user))
        await conn.execute("ANALYZE")
        await conn.commit()
    return out


async def rest_turn(client: httpx.AsyncClient, cid, user) -> float:
    t = time.perf_counter()
    r = await client.post(
        f"/api/v1/chat/conversations/{cid}/messages",
        json={"message_content": "А если срок нарушен на месяц?", "use_rag": False},
        headers={"Authorization": f"Bearer {token_for(user)}"},
    )
    assert r.status_code == 200, r.text
    return time.perf_counter() - t


async def ws_turn(ws) -> float:
    t = time.perf_counter()
    await ws.send(json.dumps({"type": "message", "content": "А если на месяц?", "use_rag": False}))
    while json.loads(await ws.recv())["type"] not in ("message", "error"):
        pass
    return time.perf_counter() - t


async def main(url: str, turns: int = 30) -> list[str]:
    url = fresh_database(url, "history")
    convs = await seed(url, per_length=turns // 5 + 1)
    lat = {(api, n): [] for api in ("REST", "WS") for n in LENGTHS}
    with Server("app", url, tokens=20) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            sockets = {}
            for n in LENGTHS:
                cid, user = convs[n][0]
                sockets[n] = await websockets.connect(
                    f"{server.ws_url}/ws/chat/{cid}?token={token_for(user)}"
                )
                await sockets[n].recv()
            for n in LENGTHS:  # warm-up
                await rest_turn(client, *convs[n][1])
                await ws_turn(sockets[n])
            for i in range(turns):
                for n in LENGTHS:
                    # REST turns rotate over conversations so each stays near its length.
                    lat[("REST", n)].append(await rest_turn(client, *convs[n][1 + i // 5]))
                    lat[("WS", n)].append(await ws_turn(sockets[n]))
            for ws in sockets.values():
                await ws.close()
    rows = []
    for (api, n), values in lat.items():
        base = median(lat[(api, LENGTHS[0])])
        rows.append([api, n, median(values) * 1000, pct(values, 95) * 1000, median(values) / base])
    header = ["API", "messages before", "p50 ms", "p95 ms", f"p50 / {LENGTHS[0]} messages"]
    return [table("Turn latency against conversation length (concurrency 1)", header, rows)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=30)
    args = parser.parse_args()
    run(lambda url: main(url, turns=args.turns))
