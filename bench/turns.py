"""Benchmark 1: server overhead per chat turn, against a bare-endpoint floor, same run.

    python -m bench.turns [--quick]

The app runs with a zero-latency chat model (20 tokens) and the offline USE embedder, with
RAG over 10,000 chunks (16 users). REST send-message and WebSocket turns at concurrency 1,
32 and 128; the floor (bench/serve.py) does the same writes and one indexed vector query.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import uuid

import httpx
import numpy as np
import psycopg
import websockets

from advocata_chat import db
from bench.common import (
    Server,
    clustered_vectors,
    copy_chunks,
    ensure_chunks_table,
    fresh_database,
    median,
    pct,
    run,
    seed_conversations,
    seed_documents,
    table,
    texts,
    token_for,
    vocabulary,
)

TOKENS = 20
TURNS_PER_CONVERSATION = 8  # then a fresh conversation: REST returns the whole chat
QUESTIONS = [
    "Какая неустойка положена по договору подряда за нарушение срока работы?",
    "Можно ли вернуть аванс, если подрядчик не выполнил работы?",
    "Как составить претензию продавцу о возврате товара ненадлежащего качества?",
    "Какие документы нужны для регистрации права собственности на квартиру?",
    "Что делать, если работодатель задерживает зарплату и отпуск?",
]


async def seed(url: str, chunks: int, users: int, conversations: int):
    await ensure_chunks_table(url)
    rng = np.random.default_rng(1)
    ids = [uuid.uuid4() for _ in range(users)]
    async with await psycopg.AsyncConnection.connect(db.psycopg_conninfo(url)) as conn:
        docs = await seed_documents(conn, ids)
        await conn.commit()
        words = vocabulary(rng)
        await copy_chunks(conn, docs, texts(rng, chunks, words), clustered_vectors(rng, chunks))
        convs = await seed_conversations(conn, ids, conversations)
        await conn.execute("ANALYZE")
    return convs


class Pool:
    """Hands out fresh conversations; each worker uses one for a few turns."""

    def __init__(self, convs: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
        self._it = iter(convs)

    def take(self) -> tuple[uuid.UUID, uuid.UUID]:
        return next(self._it)


async def measure(concurrency: int, turns: int, worker) -> dict:
    latencies: list[float] = []
    errors = 0
    counter = itertools.count()

    async def loop() -> None:
        nonlocal errors
        async for lat in worker(lambda: next(counter) < turns):
            if lat is None:
                errors += 1
            else:
                latencies.append(lat)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "p50": median(latencies) * 1000,
        "p95": pct(latencies, 95) * 1000,
        "rate": len(latencies) / wall,
        "errors": errors,
    }


def rest_worker(client: httpx.AsyncClient, pool: Pool, *, floor: bool, use_rag: bool):
    async def worker(more):
        while True:
            cid, user = pool.take()
            headers = {"Authorization": f"Bearer {token_for(user)}"}
            for i in range(TURNS_PER_CONVERSATION):
                if not more():
                    return
                q = QUESTIONS[i % len(QUESTIONS)]
                t = time.perf_counter()
                try:
                    if floor:
                        r = await client.post(f"/floor/{cid}/{user}", json={"message_content": q})
                    else:
                        r = await client.post(
                            f"/api/v1/chat/conversations/{cid}/messages",
                            json={"message_content": q, "use_rag": use_rag},
                            headers=headers,
                        )
                except httpx.TransportError:
                    yield None  # counted as an error
                    continue
                yield time.perf_counter() - t if r.status_code == 200 else None

    return worker


def ws_worker(base: str, pool: Pool, *, floor: bool, use_rag: bool):
    async def worker(more):
        while True:
            cid, user = pool.take()
            if floor:
                url = f"{base}/floor/ws/{cid}/{user}"
            else:
                url = f"{base}/ws/chat/{cid}?token={token_for(user)}"
            async with websockets.connect(url, max_queue=None) as ws:
                if not floor:
                    json.loads(await ws.recv())  # connected
                for i in range(TURNS_PER_CONVERSATION):
                    if not more():
                        return
                    q = QUESTIONS[i % len(QUESTIONS)]
                    t = time.perf_counter()
                    await ws.send(json.dumps({"type": "message", "content": q, "use_rag": use_rag}))
                    tokens = 0
                    while True:
                        frame = json.loads(await ws.recv())
                        kind = frame["type"]
                        tokens += kind == "token"
                        if kind in ("message", "error"):
                            break
                    ok = kind == "message" and tokens == TOKENS
                    yield time.perf_counter() - t if ok else None

    return worker


LEVELS = [(1, 50), (32, 256), (128, 512)]


async def main(url: str, quick: bool = False) -> list[str]:
    levels = [(1, 20), (32, 64)] if quick else LEVELS
    url = fresh_database(url, "turns")
    print("seeding 10,000 chunks over 16 users …", flush=True)
    t = time.perf_counter()
    convs = await seed(url, chunks=10_000, users=16, conversations=4000)
    print(f"seeded in {time.perf_counter() - t:.1f} s", flush=True)
    pool = Pool(convs)
    rows = []
    with Server("app", url, tokens=TOKENS) as app, Server("floor", url, tokens=TOKENS) as floor:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with (
            httpx.AsyncClient(base_url=app.url, limits=limits, timeout=120) as app_http,
            httpx.AsyncClient(base_url=floor.url, limits=limits, timeout=120) as floor_http,
        ):
            variants = {
                ("REST", "floor"): rest_worker(floor_http, pool, floor=True, use_rag=False),
                ("REST", "app, RAG"): rest_worker(app_http, pool, floor=False, use_rag=True),
                ("REST", "app, no RAG"): rest_worker(app_http, pool, floor=False, use_rag=False),
                ("WS", "floor"): ws_worker(floor.ws_url, pool, floor=True, use_rag=False),
                ("WS", "app, RAG"): ws_worker(app.ws_url, pool, floor=False, use_rag=True),
                ("WS", "app, no RAG"): ws_worker(app.ws_url, pool, floor=False, use_rag=False),
            }
            for worker in variants.values():  # warm up: models loaded, pools filled
                await measure(2, 6, worker)
            for concurrency, turns in levels:
                results = {}
                for key, worker in variants.items():
                    results[key] = await measure(concurrency, turns, worker)
                    r = results[key]
                    print(
                        f"c={concurrency:<4} {key[0]:<4} {key[1]:<12} p50 {r['p50']:7.1f} ms"
                        f"  p95 {r['p95']:7.1f} ms  {r['rate']:6.1f} turns/s  errors {r['errors']}",
                        flush=True,
                    )
                for key, r in results.items():
                    base = results[(key[0], "floor")]
                    rows.append(
                        [
                            concurrency,
                            key[0],
                            key[1],
                            r["p50"],
                            r["p95"],
                            r["rate"],
                            r["p50"] / base["p50"],
                            r["p95"] / base["p95"],
                            r["errors"],
                        ]
                    )
    header = [
        "conc.",
        "API",
        "server",
        "p50 ms",
        "p95 ms",
        "turns/s",
        "p50 / floor",
        "p95 / floor",
        "errors",
    ]
    return [table("Turn latency against the floor (goal: app p50 ≤ 2× floor)", header, rows)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer turns, for a smoke test")
    args = parser.parse_args()
    run(lambda url: main(url, quick=args.quick))
