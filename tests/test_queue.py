"""Ingestion on the queue: states and progress a client sees, a bad file failing its own
job without retries, transient failures retried with backoff, chunks written once however
often a job runs, and the `document` WebSocket frame."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager

import httpx
import openai
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from sqlalchemy import text

from advocata_chat import ingest, jobs
from advocata_chat.app import create_app
from advocata_chat.auth import mint_token
from advocata_chat.llm import build_embeddings
from tests.test_documents import CONTRACT

DOCS = "/api/v1/documents"


class Wrapped(Embeddings):
    """A fake embedder of the configured one's size (fast: these tests are not about
    search), with a hook before each batch (the model boundary)."""

    def __init__(self, inner: Embeddings, before=None) -> None:
        self.inner, self.before, self.calls = inner, before, 0

    def embed_documents(self, texts):
        return self.inner.embed_documents(texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)

    async def aembed_documents(self, texts):
        self.calls += 1
        if self.before is not None:
            await self.before(self.calls)
        return await asyncio.to_thread(self.inner.embed_documents, texts)


@asynccontextmanager
async def app_client(make_settings, before=None, **overrides):
    _, name, dims = build_embeddings(make_settings())
    embedder = Wrapped(DeterministicFakeEmbedding(size=dims), before)
    app = create_app(make_settings(**overrides), embeddings=(embedder, name, dims))
    async with app.router.lifespan_context(app):
        transport = ASGIWebSocketTransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.app = app  # type: ignore[attr-defined]
            client.embedder = embedder  # type: ignore[attr-defined]
            yield client


def long_text(chunks: int) -> bytes:
    """A text of about `chunks` chunks, every paragraph distinct."""
    paragraphs = [f"{i}. {CONTRACT}" for i in range(chunks)]
    return "\n\n".join(paragraphs).encode()


async def post(client, headers, name, data):
    r = await client.post(DOCS, headers=headers, files={"file": (name, data)})
    assert r.status_code == 201, r.text
    return r.json()


async def until(client, headers, doc_id, check, wait=60):
    """Poll GET /documents/{id} until `check(document)` holds."""
    for _ in range(int(wait * 20)):
        doc = (await client.get(f"{DOCS}/{doc_id}", headers=headers)).json()
        if check(doc):
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError(f"document never got there: {doc}")


async def job_of(client, doc_id) -> dict:
    """The document's job once it has finished (it is marked a moment after the document)."""
    for _ in range(200):
        async with client.app.state.runtime.engine.connect() as conn:
            row = await conn.execute(
                text("SELECT status, attempts FROM procrastinate_jobs WHERE lock = :d"),
                {"d": doc_id},
            )
            job = dict(row.mappings().one())
        if job["status"] not in ("todo", "doing"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"the job never finished: {job}")


async def chunk_counts(client, doc_id) -> tuple[int, int]:
    """(chunk rows, distinct chunk indexes) of a document."""
    async with client.app.state.runtime.engine.connect() as conn:
        row = await conn.execute(
            text("SELECT count(*), count(DISTINCT chunk_index) FROM chunks WHERE document_id = :d"),
            {"d": uuid.UUID(doc_id)},
        )
        return tuple(row.one())


async def test_a_document_goes_queued_processing_with_progress_then_ready(
    make_settings, auth, alice
):
    h = auth(alice)
    gate = asyncio.Event()

    async def hold_second_batch(call: int) -> None:
        if call == 2:
            await gate.wait()

    async with app_client(make_settings, hold_second_batch) as client:
        doc = await post(client, h, "long.txt", long_text(200))
        assert doc["status"] == "queued" and doc["progress"] is None, doc
        held = await until(client, h, doc["id"], lambda d: d["status"] == "processing")
        held = await until(client, h, doc["id"], lambda d: (d["progress"] or {}).get("done"))
        total = held["progress"]["total"]
        assert held["progress"] == {"done": ingest.EMBED_BATCH, "total": total, "unit": "chunks"}
        assert total > ingest.EMBED_BATCH
        gate.set()
        ready = await until(client, h, doc["id"], lambda d: d["status"] == "ready")
        assert ready["chunk_count"] == total and ready["progress"] is None
        assert ready["page_count"] is None and ready["error"] is None
        assert await chunk_counts(client, doc["id"]) == (total, total)


async def test_uploads_wait_queued_for_a_worker_and_the_file_is_kept_until_then(
    make_settings, auth, alice
):
    h = auth(alice)
    async with app_client(make_settings, ingest_worker_in_api=False) as client:
        doc = await post(client, h, "c.txt", f"{uuid.uuid4()}\n{CONTRACT}".encode())
        await asyncio.sleep(0.5)
        doc = (await client.get(f"{DOCS}/{doc['id']}", headers=h)).json()
        assert doc["status"] == "queued"
        rt = client.app.state.runtime
        async with rt.engine.connect() as conn:
            stored = await conn.scalar(
                text("SELECT length(data) FROM document_files WHERE document_id = :d"),
                {"d": uuid.UUID(doc["id"])},
            )
        assert stored == doc["size_bytes"]
        # A worker that starts later (here: in the same process) takes the job.
        async with jobs.running(rt, concurrency=1):
            ready = await until(client, h, doc["id"], lambda d: d["status"] == "ready")
        assert ready["chunk_count"] >= 1
        async with rt.engine.connect() as conn:
            left = await conn.scalar(
                text("SELECT count(*) FROM document_files WHERE document_id = :d"),
                {"d": uuid.UUID(doc["id"])},
            )
        assert left == 0  # the text is stored; the bytes are not needed any more


async def test_a_bad_file_fails_its_own_job_once_with_a_clear_error(make_settings, auth, alice):
    h = auth(alice)
    async with app_client(make_settings) as client:
        doc = await post(client, h, "scan.pdf", b"%PDF-1.4\nthis is not really a pdf")
        failed = await until(client, h, doc["id"], lambda d: d["status"] == "failed")
        assert failed["error_code"] == "unreadable_file"
        assert failed["error"].startswith("The PDF could not be read"), failed
        # One run (procrastinate counts the finished run), no retry.
        assert await job_of(client, doc["id"]) == {"status": "succeeded", "attempts": 1}
        assert client.embedder.calls == 0
        # The next upload is not held up behind it.
        ok = await post(client, h, "ok.txt", f"{uuid.uuid4()}\n{CONTRACT}".encode())
        await until(client, h, ok["id"], lambda d: d["status"] == "ready")


def rate_limited() -> openai.RateLimitError:
    request = httpx.Request("POST", "http://provider/v1/embeddings")
    return openai.RateLimitError(
        "Rate limit reached", response=httpx.Response(429, request=request), body=None
    )


async def test_a_provider_429_is_retried_with_backoff_until_it_passes(make_settings, auth, alice):
    h = auth(alice)

    async def refuse_twice(call: int) -> None:
        if call <= 2:
            raise rate_limited()

    async with app_client(
        make_settings, refuse_twice, ingest_retry_base_seconds=1, ingest_heartbeat_seconds=0.5
    ) as client:
        doc = await post(client, h, "c.txt", f"{uuid.uuid4()}\n{CONTRACT}".encode())
        ready = await until(client, h, doc["id"], lambda d: d["status"] == "ready")
        assert ready["error"] is None and ready["chunk_count"] >= 1
        # Two runs refused and retried, the third finished.
        assert await job_of(client, doc["id"]) == {"status": "succeeded", "attempts": 3}
        assert client.embedder.calls >= 3
        assert await chunk_counts(client, doc["id"]) == (ready["chunk_count"],) * 2


async def test_a_provider_that_keeps_failing_ends_in_failed_after_the_last_attempt(
    make_settings, auth, alice
):
    h = auth(alice)

    async def always(call: int) -> None:
        raise rate_limited()

    async with app_client(
        make_settings, always, ingest_retry_base_seconds=1, ingest_max_attempts=3
    ) as client:
        doc = await post(client, h, "c.txt", f"{uuid.uuid4()}\n{CONTRACT}".encode())
        failed = await until(client, h, doc["id"], lambda d: d["status"] == "failed")
        assert failed["error"].startswith("The embedding service failed"), failed
        assert failed["error_code"] == "indexing_failed"
        assert client.embedder.calls == 3
        assert await chunk_counts(client, doc["id"]) == (0, 0)


async def test_a_job_run_again_or_twice_at_once_writes_each_chunk_once(make_settings, auth, alice):
    h = auth(alice)
    async with app_client(make_settings) as client:
        rt = client.app.state.runtime
        doc = await post(client, h, "long.txt", long_text(120))
        ready = await until(client, h, doc["id"], lambda d: d["status"] == "ready")
        n = ready["chunk_count"]
        doc_id = uuid.UUID(doc["id"])
        # As a retry or a taken-over job does: the document is indexed again, twice at once.
        async with rt.engine.begin() as conn:
            await conn.execute(
                text("UPDATE documents SET status = 'queued' WHERE id = :d"), {"d": doc_id}
            )
        await asyncio.gather(
            ingest.index(rt, doc_id, last_attempt=True, publish=None),
            ingest.index(rt, doc_id, last_attempt=True, publish=None),
        )
        again = (await client.get(f"{DOCS}/{doc['id']}", headers=h)).json()
        assert again["status"] == "ready" and again["chunk_count"] == n
        assert await chunk_counts(client, doc["id"]) == (n, n)
        # A job for a document already ready changes nothing.
        calls = client.embedder.calls
        await ingest.index(rt, doc_id, last_attempt=True, publish=None)
        assert client.embedder.calls == calls


async def test_the_owner_s_sockets_get_a_document_frame_at_each_change(
    make_settings, settings, auth, alice, bob
):
    async with app_client(make_settings) as client:
        frames = {}
        for user in (alice, bob):
            r = await client.post("/api/v1/chat/conversations", json={}, headers=auth(user))
            frames[user] = r.json()["id"]
        a_url = f"http://test/ws/chat/{frames[alice]}?token={mint_token(settings, user_id=alice)}"
        b_url = f"http://test/ws/chat/{frames[bob]}?token={mint_token(settings, user_id=bob)}"
        async with aconnect_ws(a_url, client) as a, aconnect_ws(b_url, client) as b:
            for ws in (a, b):
                assert json.loads(await ws.receive_text())["type"] == "connected"
            doc = await post(client, auth(alice), "c.txt", f"{uuid.uuid4()}\n{CONTRACT}".encode())
            seen = []
            while not seen or seen[-1]["status"] != "ready":
                frame = json.loads(await asyncio.wait_for(a.receive_text(), 30))
                assert frame["type"] == "document" and frame["id"] == doc["id"], frame
                seen.append(frame)
            assert seen[0]["status"] == "processing"
            assert any(f["progress"] and f["progress"]["done"] >= 1 for f in seen)
            assert set(seen[-1]) == {
                "type",
                "id",
                "title",
                "status",
                "progress",
                "chunk_count",
                "error",
                "error_code",
            }
            assert seen[-1]["chunk_count"] >= 1 and seen[-1]["progress"] is None
            # Bob's socket heard nothing of Alice's document.
            try:
                got = await asyncio.wait_for(b.receive_text(), 0.5)
            except TimeoutError:
                got = None
            assert got is None
