"""Benchmark 2: streaming fan-out over N concurrent WebSocket conversations.

    python -m bench.fanout [--sizes 100,500,1000] [--tokens 300]

Each of N sockets (one conversation each, one server process) sends a message at the same
moment; the zero-latency model streams 300 tokens per answer, each stamped with its
creation time, so the client measures every token's delivery delay. Reported: delivered
tokens/s, delivery delay p50/p95, server CPU per token, server memory per open socket,
errors and lost tokens (every stream must deliver 300 tokens that add up to the stored
answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import psutil
import psycopg
import websockets

from advocata_chat import db
from bench.common import (
    Server,
    fresh_database,
    median,
    pct,
    run,
    seed_conversations,
    table,
    token_for,
)


async def open_socket(base: str, cid: uuid.UUID, user: uuid.UUID):
    ws = await websockets.connect(
        f"{base}/ws/chat/{cid}?token={token_for(user)}", max_queue=None, open_timeout=60
    )
    assert json.loads(await ws.recv())["type"] == "connected"
    return ws


async def stream(ws, tokens: int, delays: list[float]) -> str | None:
    """One turn; returns None when all tokens arrived and match the stored answer."""
    await ws.send(
        json.dumps({"type": "message", "content": "Расскажите подробно", "use_rag": False})
    )
    parts: list[str] = []
    while True:
        frame = json.loads(await ws.recv())
        kind = frame["type"]
        if kind == "token":
            delays.append(time.monotonic() - float(frame["delta"]))
            parts.append(frame["delta"])
        elif kind == "message":
            if len(parts) != tokens:
                return f"lost tokens: {tokens - len(parts)}"
            if "".join(parts) != frame["message"]["content"]:
                return "deltas differ from the stored answer"
            return None
        elif kind == "error":
            return f"error frame: {frame.get('code')}"


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def open_all(server: Server, convs) -> list:
    sockets = []
    for first in range(0, len(convs), 100):  # in waves, so the accept backlog never overflows
        sockets += await asyncio.gather(
            *(open_socket(server.ws_url, c, u) for c, u in convs[first : first + 100])
        )
    return sockets


async def idle_memory(server: Server, convs) -> float:
    """KiB of server memory per open idle socket, on a fresh server (RSS does not shrink
    after a run, so a later measurement would reuse freed memory and read too low)."""
    proc = psutil.Process(server.proc.pid)
    before = proc.memory_info().rss
    sockets = await open_all(server, convs)
    await asyncio.sleep(0.5)
    per_socket = (proc.memory_info().rss - before) / len(convs) / 1024
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return per_socket


async def one_size(server: Server, convs, n: int, tokens: int) -> list:
    proc = psutil.Process(server.proc.pid)
    sockets = await open_all(server, convs)
    delays: list[float] = []
    cpu_before = cpu(proc)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(stream(ws, tokens, delays) for ws in sockets), return_exceptions=True
    )
    wall = time.perf_counter() - started
    cpu_used = cpu(proc) - cpu_before
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    errors = [r for r in results if r is not None]
    if errors:
        print(f"N={n}: {len(errors)} errors, e.g. {errors[0]!r}", flush=True)
    delivered = len(delays)
    row = [
        n,
        delivered,
        n * tokens - delivered,
        len(errors),
        wall,
        delivered / wall,
        median(delays) * 1000,
        pct(delays, 95) * 1000,
        cpu_used / max(delivered, 1) * 1e6,
        proc.memory_info().rss / 2**20,
    ]
    print(
        f"N={n}: {delivered} tokens in {wall:.1f} s = {delivered / wall:.0f} tokens/s, delay p50 "
        f"{row[6]:.0f} ms p95 {row[7]:.0f} ms, server CPU {row[8]:.0f} µs/token, "
        f"server RSS {row[9]:.0f} MiB, errors {len(errors)}",
        flush=True,
    )
    return row


async def main(url: str, sizes=(100, 500, 1000), tokens: int = 300) -> list[str]:
    url = fresh_database(url, "fanout")
    users = [uuid.uuid4() for _ in range(50)]
    async with await psycopg.AsyncConnection.connect(db.psycopg_conninfo(url)) as conn:
        convs = await seed_conversations(conn, users, sum(sizes) + 10)
    rows = []
    with Server("app", url, tokens=tokens, stamp=1) as server:
        ws = await open_socket(server.ws_url, *convs[-1])  # warm-up turn
        assert await stream(ws, tokens, []) is None
        await ws.close()
        per_socket = await idle_memory(server, convs[: max(sizes)])
        print(f"{per_socket:.1f} KiB of server memory per open idle socket", flush=True)
        at = 0
        for n in sizes:
            rows.append(await one_size(server, convs[at : at + n], n, tokens))
            at += n
    header = [
        "streams",
        "tokens delivered",
        "lost",
        "errors",
        "wall s",
        "tokens/s",
        "delay p50 ms",
        "delay p95 ms",
        "server CPU µs/token",
        "server RSS MiB",
    ]
    title = (
        f"Fan-out, {tokens}-token answers, one server process "
        f"({per_socket:.0f} KiB per open idle socket, {max(sizes)} open)"
    )
    return [table(title, header, rows)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,500,1000")
    parser.add_argument("--tokens", type=int, default=300)
    args = parser.parse_args()
    sizes = tuple(int(x) for x in args.sizes.split(","))
    run(lambda url: main(url, sizes=sizes, tokens=args.tokens))
