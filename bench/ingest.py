"""Benchmark 4: ingestion on the queue, and the chat turns served meanwhile.

    python -m bench.ingest [--docs 6] [--paragraphs 90] [--workers 1,2,4] [--embedder e5]

Runs the real `advocata-chat serve` (one process) on a fresh database, with the offline
extractive model and embedder, in each of these set-ups:
- `in-API`: the server's own in-process worker ingests, as every upload did before the
  queue (indexing in the serving process);
- `N workers`: `INGEST_WORKER_IN_API=false` and N `advocata-chat worker` processes.
A user with one small indexed document asks RAG questions over REST one after another
(`POST …/messages`, a closed loop) while another user uploads `--docs` text documents at
once (no `?wait`); the run ends when every document is `ready`. Reported: documents and
chunks per second from the first upload to the last `ready`, and the latency of the chat
turns answered meanwhile (p50, p95), beside the same turns with nothing being ingested.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import httpx
import numpy as np

from bench.common import fresh_database, pct, run, table, texts, token_for, vocabulary
from tests.server import free_port

QUESTIONS = [
    "Сколько стоят работы по договору?",
    "Какой аванс выплачивается при подписании?",
    "Кто подрядчик по договору?",
    "Что будет при просрочке оплаты?",
]
CHAT_DOC = """ДОГОВОР ПОДРЯДА № 41/Р

1.1. Подрядчик — ИП Шарипов Ринат Маратович — обязуется выполнить ремонт санузла.
3.1. Цена работ составляет 164 800 (сто шестьдесят четыре тысячи восемьсот) рублей.
3.2. Аванс 30 % выплачивается в день подписания договора.
5.1. За просрочку оплаты заказчик платит пеню 0,1 % от суммы долга за каждый день.
"""


def _env(url: str, embedder: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    return env | {
        "DATABASE_URL": url,
        "AUTO_MIGRATE": "false",
        "OFFLINE_EMBEDDER": embedder,
        "RATE_MESSAGES_PER_MINUTE": "0",
        "RATE_UPLOADS_PER_HOUR": "0",
        "TOKEN_QUOTA": "0",
        "LOG_LEVEL": "warning",
        **extra,
    }


def _start(args: list[str], env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "advocata_chat.cli", *args],
        env=env,
        cwd=tempfile.gettempdir(),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


async def _ready(client: httpx.AsyncClient, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError("the server exited; see its log")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError("the server did not start")


async def _turns(client, user, stop: asyncio.Event, out: list[float], failed: list[int]) -> None:
    """RAG questions one after another until `stop`; each answered turn's latency into
    `out`, each refused one's status into `failed` (504: the first-token deadline)."""
    h = {"Authorization": f"Bearer {token_for(user)}"}
    n = 0
    while not stop.is_set():
        if n % 20 == 0:
            cid = (await client.post("/api/v1/chat/conversations", json={}, headers=h)).json()
        body = {"message_content": QUESTIONS[n % len(QUESTIONS)], "use_rag": True}
        started = time.perf_counter()
        r = await client.post(
            f"/api/v1/chat/conversations/{cid['id']}/messages", json=body, headers=h
        )
        if r.status_code == 200:
            out.append(time.perf_counter() - started)
        else:
            failed.append(r.status_code)
        n += 1


async def one_setup(url: str, workers: int, docs: list[bytes], embedder: str) -> dict[str, float]:
    """workers=0: the in-API worker. Returns throughput and chat latencies."""
    database = fresh_database(url, f"ingest{workers}")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-ingest-", suffix=".log")  # noqa: SIM115
    in_api = "true" if workers == 0 else "false"
    env = _env(database, embedder, INGEST_WORKER_IN_API=in_api)
    procs = [_start(["serve", "--port", str(port)], env, log)]
    timeout = httpx.Timeout(120)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as c:
            await _ready(c, procs[0])
            procs += [_start(["worker"], env, log) for _ in range(workers)]
            asker, uploader = uuid.uuid4(), uuid.uuid4()
            h = {"Authorization": f"Bearer {token_for(asker)}"}
            files = {"file": ("contract.txt", CHAT_DOC.encode())}
            r = await c.post("/api/v1/documents?wait=true", headers=h, files=files)
            assert r.json()["status"] == "ready", r.text
            # Chat alone, for the floor.
            idle: list[float] = []
            idle_failed: list[int] = []
            stop = asyncio.Event()
            chat = asyncio.create_task(_turns(c, asker, stop, idle, idle_failed))
            await asyncio.sleep(10)
            stop.set()
            await chat
            # Uploads, all at once, while the chat goes on.
            busy: list[float] = []
            busy_failed: list[int] = []
            stop = asyncio.Event()
            chat = asyncio.create_task(_turns(c, asker, stop, busy, busy_failed))
            hu = {"Authorization": f"Bearer {token_for(uploader)}"}
            started = time.perf_counter()
            for i, data in enumerate(docs):
                r = await c.post(
                    "/api/v1/documents", headers=hu, files={"file": (f"d{i}.txt", data)}
                )
                assert r.status_code == 201, r.text
            while True:
                page = (await c.get("/api/v1/documents?limit=100", headers=hu)).json()
                if all(d["status"] in ("ready", "failed") for d in page["items"]):
                    break
                await asyncio.sleep(0.2)
            took = time.perf_counter() - started
            stop.set()
            await chat
            assert all(d["status"] == "ready" for d in page["items"]), page
            chunks = sum(d["chunk_count"] for d in page["items"])
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    return {
        "seconds": took,
        "docs/s": len(docs) / took,
        "chunks": chunks,
        "chunks/s": chunks / took,
        "idle p50": pct(idle, 50) * 1000,
        "idle p95": pct(idle, 95) * 1000,
        "turns": len(busy),
        "failed": len(busy_failed) + len(idle_failed),
        "busy p50": pct(busy, 50) * 1000,
        "busy p95": pct(busy, 95) * 1000,
    }


def documents(n: int, paragraphs: int) -> list[bytes]:
    rng = np.random.default_rng(15)
    words = vocabulary(rng)
    return ["\n\n".join(texts(rng, paragraphs, words, mean_words=30)).encode() for _ in range(n)]


async def main(
    url: str,
    *,
    docs: int = 6,
    paragraphs: int = 90,
    workers: tuple[int, ...] = (1, 2, 4),
    embedder: str = "e5",
) -> list[str]:
    corpus = documents(docs, paragraphs)
    rows = []
    for n in (0, *workers):
        label = "in-API (as before)" if n == 0 else f"{n} worker process{'es' if n > 1 else ''}"
        print(f"{label}…", flush=True)
        r = await one_setup(url, n, corpus, embedder)
        rows.append(
            [
                label,
                f"{r['seconds']:.1f}",
                f"{r['chunks/s']:.2f}",
                f"{r['docs/s'] * 60:.1f}",
                f"{int(r['turns'])} ({int(r['failed'])} failed)",
                f"{r['idle p50']:.0f} / {r['idle p95']:.0f}",
                f"{r['busy p50']:.0f} / {r['busy p95']:.0f}",
            ]
        )
    return [
        table(
            f"Ingestion of {docs} documents ({rows and corpus and int(r['chunks'])} chunks, "
            f"{embedder} embedder) with chat turns served meanwhile",
            [
                "ingestion",
                "all ready (s)",
                "chunks/s",
                "docs/min",
                "turns answered meanwhile (failed)",
                "turn p50 / p95 idle (ms)",
                "turn p50 / p95 while ingesting (ms)",
            ],
            rows,
        )
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=6)
    parser.add_argument("--paragraphs", type=int, default=90, help="per document")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--embedder", default="e5", choices=["e5", "use"])
    args = parser.parse_args()
    counts = tuple(int(n) for n in args.workers.split(","))
    run(
        lambda url: main(
            url,
            docs=args.docs,
            paragraphs=args.paragraphs,
            workers=counts,
            embedder=args.embedder,
        )
    )
