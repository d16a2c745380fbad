"""Shared pieces of the benchmarks: the database, a zero-latency chat model, synthetic
Russian-like text and vectors, direct seeding, server subprocesses, and statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from sqlalchemy import make_url

from advocata_chat import db
from advocata_chat.offline import USEEmbeddings

DIMS = USEEmbeddings.dimensions
EMBED_MODEL = USEEmbeddings.model_name

# -- the database ---------------------------------------------------------------------


# Benchmarks send far more than a person: per-user rate limits and quota would only measure 429s.
NO_LIMITS = {"rate_messages_per_minute": 0, "rate_uploads_per_hour": 0, "token_quota": 0}


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    """`DATABASE_URL`, or an embedded PostgreSQL in a temporary folder (stopped on exit)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield db.async_url(url)
        return
    with tempfile.TemporaryDirectory(prefix="advocata-bench-") as tmp:
        yield db.async_url(db.start_embedded_postgres(Path(tmp)))


def fresh_database(url: str, prefix: str) -> str:
    """A new empty database on the same server, migrated; returns its SQLAlchemy URL."""
    name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db.psycopg_conninfo(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    new = make_url(url).set(database=name).render_as_string(hide_password=False)
    db.migrate(new)
    return new


# -- a chat model that costs nothing --------------------------------------------------

WORDS = (
    "договор подрядчик заказчик оплата неустойка претензия суд иск срок работы акт приёмки "
    "аванс расторжение ответственность гарантия ущерб возмещение страховая выплата полис "
    "арендатор арендодатель квартира собственник наследство завещание нотариус доверенность "
    "работодатель увольнение зарплата отпуск трудовой штраф пени задолженность кредитор "
    "должник банк займ проценты залог имущество регистрация права обязанности сторон "
    "исполнение нарушение условия уведомление письмо ответ требование решение апелляция "
    "экспертиза оценка стоимость ремонт дефект качество товар продавец покупатель возврат "
    "потребитель закон статья кодекс пункт часть федеральный гражданский процессуальный"
).split()


class FastChatModel(BaseChatModel):
    """Streams `tokens` word tokens as fast as it can. With `stamp`, every token carries the
    `time.monotonic()` of its creation (CLOCK_MONOTONIC is shared by processes on Linux),
    so a client can measure each token's delivery delay."""

    tokens: int = 20
    stamp: bool = False

    @property
    def _llm_type(self) -> str:
        return "bench-fast"

    def _pieces(self) -> Iterator[str]:
        for i in range(self.tokens):
            yield f"{time.monotonic():.6f} " if self.stamp else WORDS[i % len(WORDS)] + " "

    def _usage(self) -> UsageMetadata:
        return UsageMetadata(
            input_tokens=100, output_tokens=self.tokens, total_tokens=100 + self.tokens
        )

    def _generate(
        self, messages: list[BaseMessage], stop=None, run_manager=None, **kw
    ) -> ChatResult:
        text = "".join(self._pieces())
        msg = AIMessage(content=text, usage_metadata=self._usage())
        return ChatResult(generations=[ChatGeneration(message=msg)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for piece in self._pieces():
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=self._usage()))


# -- synthetic Russian-like text and vectors -----------------------------------------

_SYLLABLES = (
    "ра ко ни то ве ли ст ов на ер ал ен ре пр ол ан ко ми ти да ло ва за по мо ль ес "
    "ск ир ус ат ор ин ом ка же ды чи ще зо бу гр тв кр"
).split()
_ENDINGS = "а о е ы и ой ому ами ах ия ие ость ение ский ный ать ить ует ает".split()


def vocabulary(rng: np.random.Generator, size: int = 6000) -> list[str]:
    """Real legal words plus pseudo-words with Russian endings (the stemmer strips them)."""
    words = list(WORDS)
    while len(words) < size:
        stem = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))
        words.append(stem + rng.choice(_ENDINGS))
    return words


def texts(rng: np.random.Generator, n: int, words: list[str], mean_words: int = 90) -> list[str]:
    """`n` chunks of Zipf-distributed words, in sentences, with clause numbers."""
    ranks = np.arange(1, len(words) + 1)
    p = 1.0 / ranks**1.05
    p /= p.sum()
    lengths = rng.integers(mean_words // 2, mean_words * 3 // 2, size=n)
    picks = rng.choice(len(words), size=int(lengths.sum()), p=p)
    out, at = [], 0
    for i, length in enumerate(lengths):
        chunk = [words[j] for j in picks[at : at + length]]
        at += length
        for k in range(0, len(chunk), 12):
            chunk[k] = chunk[k].capitalize()
            if k:
                chunk[k - 1] += "."
        out.append(f"{i % 40 + 1}.{i % 7 + 1}. " + " ".join(chunk) + ".")
    return out


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def clustered_vectors(rng: np.random.Generator, n: int, topics: int = 500) -> np.ndarray:
    """Unit vectors around `topics` random centres: synthetic, but with the neighbourhood
    structure real embeddings have (pure random 512-d vectors have no near neighbours)."""
    centres = unit(rng.standard_normal((topics, DIMS)))
    which = rng.integers(0, topics, size=n)
    return unit(centres[which] + 0.6 * unit(rng.standard_normal((n, DIMS))))


# -- seeding straight into the tables -------------------------------------------------


async def ensure_chunks_table(url: str) -> None:
    """Create `chunks` (and its HNSW index) exactly as the app does."""
    from advocata_chat.store import open_store

    engine = db.make_engine(url, _settings(url))
    try:
        await open_store(engine, USEEmbeddings(), model=EMBED_MODEL, dims=DIMS)
    finally:
        await engine.dispose()


def _settings(url: str):
    from advocata_chat.config import Settings

    return Settings(_env_file=None, database_url=url, auto_migrate=False, **NO_LIMITS)


async def seed_documents(conn: psycopg.AsyncConnection, users: list[uuid.UUID], per_user: int = 5):
    """Ready documents for each user; returns {user: [document ids]}."""
    docs: dict[uuid.UUID, list[uuid.UUID]] = {}
    rows = []
    for u in users:
        docs[u] = [uuid.uuid4() for _ in range(per_user)]
        for i, d in enumerate(docs[u]):
            rows.append((d, u, f"Договор {i + 1}", f"doc{i}.txt", "text/plain", d.hex + "0" * 32))
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO documents (id, user_id, title, filename, media_type, sha256, size_bytes,"
            " status, chunk_count, text, pages, created_at, updated_at) VALUES"
            " (%s, %s, %s, %s, %s, %s, 1000, 'ready', 0, '', '[]', now(), now())",
            rows,
        )
    return docs


async def copy_chunks(
    conn: psycopg.AsyncConnection,
    docs: dict[uuid.UUID, list[uuid.UUID]],
    contents: list[str],
    vectors: np.ndarray,
    *,
    offset: int = 0,
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """COPY chunks into a staging table and move them into `chunks` with their tsvector.
    Chunk i belongs to user i % len(users). Returns [(chunk id, user id)]."""
    from pgvector.psycopg import register_vector_async

    await register_vector_async(conn)
    users = list(docs)
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS stage (id uuid, content text, embedding vector, "
        "user_id uuid, document_id uuid, chunk_index int) ON COMMIT DELETE ROWS"
    )
    out = []
    async with conn.cursor() as cur:
        async with cur.copy(
            "COPY stage (id, content, embedding, user_id, document_id, chunk_index) "
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "text", "vector", "uuid", "uuid", "int4"])
            for i, (content, vec) in enumerate(zip(contents, vectors, strict=True)):
                n = offset + i
                user = users[n % len(users)]
                doc = docs[user][(n // len(users)) % len(docs[user])]
                cid = uuid.uuid4()
                out.append((cid, user))
                await copy.write_row((cid, content, vec, user, doc, n))
        await cur.execute(
            "INSERT INTO chunks (id, content, embedding, content_tsv, user_id, document_id,"
            " chunk_index, start_char, end_char, page, title)"
            " SELECT id, content, embedding, to_tsvector('pg_catalog.russian', content),"
            " user_id, document_id, chunk_index, 0, length(content), 1, 'Договор' FROM stage"
        )
    await conn.commit()
    return out


async def seed_conversations(
    conn: psycopg.AsyncConnection, users: list[uuid.UUID], n: int
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """`n` empty active conversations, round-robin over users: [(conversation, user)]."""
    rows = [(uuid.uuid4(), users[i % len(users)]) for i in range(n)]
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO conversations (id, user_id, title, status, total_tokens, messages_count,"
            " created_at, updated_at, last_message_at) VALUES"
            " (%s, %s, 'bench', 'active', 0, 0, now(), now(), now())",
            rows,
        )
    await conn.commit()
    return rows


def token_for(user: uuid.UUID) -> str:
    from advocata_chat.auth import mint_token
    from advocata_chat.config import Settings

    return mint_token(Settings(_env_file=None), user_id=user)


# -- server subprocesses --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m bench.serve KIND` on a free 127.0.0.1 port."""

    def __init__(
        self, kind: str, database_url: str, *, stderr: Path | None = None, **options: Any
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "bench.serve", kind, "--port", str(self.port)]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "AUTO_MIGRATE": "false",
            "RATE_MESSAGES_PER_MINUTE": "0",
            "RATE_UPLOADS_PER_HOUR": "0",
            "TOKEN_QUOTA": "0",
            # The seeded chunks are USE vectors (bench.common.DIMS): the app must embed with it.
            "OFFLINE_EMBEDDER": "use",
        }
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            env.pop(name, None)
        # A file, never a pipe: an unread pipe blocks a chatty server.
        err = open(stderr, "ab") if stderr else None  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        if err:
            err.close()

    def wait_ready(self, timeout: float = 60) -> Server:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bench server exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError("bench server did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> Server:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- statistics and output ------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table, printed and returned (bench.all collects them)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs (nproc), {mem:.1f} GiB RAM, Python {sys.version.split()[0]}"


def run(main) -> None:
    """Run an async benchmark main under the database context."""
    print(f"machine: {machine()}", flush=True)
    started = time.monotonic()
    with server_url() as url:
        asyncio.run(main(url))
    print(f"\n(took {time.monotonic() - started:.0f} s)", flush=True)
