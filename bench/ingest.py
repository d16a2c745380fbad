"""Benchmark 4: ingestion throughput, upload to `ready`, with the offline USE embedder.

    python -m bench.ingest [--docs 3] [--pages 20]

Uploads generated PDF and DOCX files (Russian contract-like text, ~1,500 characters a page)
through the API in-process (`?wait=true`), and splits the time into extraction, embedding
and database writes by wrapping those three steps. DOCX has no pages: its pages are
1,800-character standard typed pages. Side by side, the same chunks are written with
PGVectorStore's row-by-row `aadd_embeddings` (the old path) and with the batched
`store.add_chunks`.
"""

from __future__ import annotations

import argparse
import io
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psycopg
from sqlalchemy import text

from advocata_chat import db, documents
from advocata_chat.app import create_app
from advocata_chat.auth import mint_token
from advocata_chat.config import Settings
from advocata_chat.store import ChunkRow, add_chunks
from bench.common import (
    NO_LIMITS,
    fresh_database,
    median,
    run,
    seed_documents,
    table,
    texts,
    vocabulary,
)

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def pages_of_text(rng, pages: int, words) -> list[str]:
    return texts(rng, pages, words, mean_words=180)


def pdf_bytes(pages: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=10)
    for page in pages:
        pdf.add_page()
        pdf.multi_cell(0, 5, page)
    return bytes(pdf.output())


def docx_bytes(pages: list[str]) -> bytes:
    from docx import Document

    doc = Document()
    for page in pages:
        for para in page.split(". "):
            doc.add_paragraph(para)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


class Clock:
    """Seconds spent in each wrapped step."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def add(self, step: str, seconds: float) -> None:
        self.spent[step] = self.spent.get(step, 0.0) + seconds

    def reset(self) -> None:
        self.spent = {}


def instrument(rt, clock: Clock) -> None:
    extract = rt.extractor.extract

    async def timed_extract(*a, **kw):
        t = time.perf_counter()
        try:
            return await extract(*a, **kw)
        finally:
            clock.add("extraction", time.perf_counter() - t)

    embed = rt.embeddings.aembed_documents

    async def timed_embed(batch):
        t = time.perf_counter()
        try:
            return await embed(batch)
        finally:
            clock.add("embedding", time.perf_counter() - t)

    add = documents.add_chunks

    async def timed_add(*a, **kw):
        t = time.perf_counter()
        try:
            return await add(*a, **kw)
        finally:
            clock.add("db writes", time.perf_counter() - t)

    rt.extractor.extract = timed_extract
    documents.add_chunks = timed_add
    rt.embeddings.aembed_documents = timed_embed


async def compare_writes(url: str, rt, document_id: uuid.UUID) -> list:
    """Write one document's chunks again, row by row and batched, into fresh documents."""
    async with rt.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT content, embedding::text AS e, chunk_index, start_char, end_char, "
                    "page, user_id FROM chunks WHERE document_id = :d ORDER BY chunk_index"
                ),
                {"d": document_id},
            )
        ).all()
    user = rows[0].user_id
    vectors = [[float(x) for x in r.e.strip("[]").split(",")] for r in rows]
    async with await psycopg.AsyncConnection.connect(db.psycopg_conninfo(url)) as conn:
        docs = await seed_documents(conn, [user], per_user=2)
        await conn.commit()
    old_doc, new_doc = docs[user]
    t = time.perf_counter()
    for first in range(0, len(rows), documents.EMBED_BATCH):
        part = rows[first : first + documents.EMBED_BATCH]
        await rt.store.aadd_embeddings(
            [r.content for r in part],
            vectors[first : first + len(part)],
            metadatas=[
                {
                    "user_id": user,
                    "document_id": old_doc,
                    "chunk_index": r.chunk_index,
                    "start_char": r.start_char,
                    "end_char": r.end_char,
                    "page": r.page,
                    "title": "old path",
                }
                for r in part
            ],
            ids=[str(uuid.uuid4()) for _ in part],
        )
    old = time.perf_counter() - t
    t = time.perf_counter()
    for first in range(0, len(rows), documents.EMBED_BATCH):
        part = rows[first : first + documents.EMBED_BATCH]
        await add_chunks(
            rt.engine,
            user_id=user,
            document_id=new_doc,
            title="batched",
            rows=[
                ChunkRow(
                    uuid.uuid4(), r.content, v, r.chunk_index, r.start_char, r.end_char, r.page
                )
                for r, v in zip(part, vectors[first : first + len(part)], strict=True)
            ],
        )
    new = time.perf_counter() - t
    return [len(rows), old * 1000, new * 1000, old / new]


async def main(url: str, n_docs: int = 3, pages: int = 20) -> list[str]:
    url = fresh_database(url, "ingest")
    rng = np.random.default_rng(3)
    words = vocabulary(rng)
    settings = Settings(_env_file=None, database_url=url, auto_migrate=False, **NO_LIMITS)
    app = create_app(settings)
    user = uuid.uuid4()
    headers = {"Authorization": f"Bearer {mint_token(settings, user_id=user)}"}
    clock = Clock()
    files = []
    for i in range(n_docs):
        body = pages_of_text(rng, pages, words)
        files.append(("PDF", f"contract{i}.pdf", pdf_bytes(body), sum(map(len, body))))
        body = pages_of_text(rng, pages, words)
        files.append(("DOCX", f"contract{i}.docx", docx_bytes(body), sum(map(len, body))))
    rows, compare = [], []
    async with app.router.lifespan_context(app):
        rt = app.state.runtime
        instrument(rt, clock)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            warm = docx_bytes(pages_of_text(rng, 2, words))  # loads the USE model
            await client.post(
                "/api/v1/documents",
                params={"wait": True},
                headers=headers,
                files={"file": ("warm.docx", warm)},
            )
            per_kind: dict[str, list] = {"PDF": [], "DOCX": []}
            last_pdf = None
            for kind, name, data, chars in files:
                clock.reset()
                t = time.perf_counter()
                r = await client.post(
                    "/api/v1/documents",
                    params={"wait": True},
                    headers=headers,
                    files={"file": (name, data)},
                )
                wall = time.perf_counter() - t
                doc = r.json()
                assert doc["status"] == "ready", doc
                n_pages = doc["page_count"] or chars / 1800
                per_kind[kind].append((wall, n_pages, doc["chunk_count"], dict(clock.spent)))
                if kind == "PDF":
                    last_pdf = uuid.UUID(doc["id"])
            for kind, results in per_kind.items():
                wall = sum(x[0] for x in results)
                n_pages = sum(x[1] for x in results)
                chunks = sum(x[2] for x in results)
                share = {
                    s: sum(x[3].get(s, 0.0) for x in results) / wall
                    for s in ("extraction", "embedding", "db writes")
                }
                rows.append(
                    [
                        kind,
                        len(results),
                        round(n_pages),
                        chunks,
                        median([x[0] for x in results]),
                        n_pages / wall,
                        chunks / wall,
                        f"{share['extraction']:.0%}",
                        f"{share['embedding']:.0%}",
                        f"{share['db writes']:.0%}",
                        f"{1 - sum(share.values()):.0%}",
                    ]
                )
            compare.append(await compare_writes(url, rt, last_pdf))
    header = [
        "format",
        "files",
        "pages",
        "chunks",
        "s per file (median)",
        "pages/s",
        "chunks/s",
        "extraction",
        "embedding",
        "db writes",
        "other",
    ]
    out = [table("Ingestion, upload to ready (goal: db writes ≤ 10%)", header, rows)]
    out.append(
        table(
            "Chunk writes for one document: row by row (PGVectorStore) vs batched, same run",
            ["chunks", "row by row ms", "batched ms", "ratio"],
            compare,
        )
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=3)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    run(lambda url: main(url, n_docs=args.docs, pages=args.pages))
