"""Document services: upload (extract, split), background indexing, list, get, delete."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import PurePath

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from advocata_chat import limits
from advocata_chat.errors import NotFound, PayloadTooLarge, is_database_down
from advocata_chat.extract import suffix_of, too_large
from advocata_chat.models import Document, DocumentStatus, utcnow
from advocata_chat.runtime import Runtime
from advocata_chat.schemas import DocumentOut, DocumentPage
from advocata_chat.splitter import Span, split
from advocata_chat.store import TABLE, ChunkRow, add_chunks

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
}
EMBED_BATCH = 64


class DocumentNotFound(NotFound):
    example = "Document not found"

    def __init__(self) -> None:
        super().__init__("Document not found")


def chunk_id(document_id: uuid.UUID, index: int) -> uuid.UUID:
    # Deterministic, so indexing the same document again overwrites instead of duplicating.
    return uuid.uuid5(document_id, str(index))


async def upload(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    filename: str,
    data: bytes,
    title: str | None = None,
    wait: bool = False,
) -> tuple[DocumentOut, bool]:
    """Store and start indexing a document. Returns (document, created)."""
    limit = rt.settings.max_upload_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"The file is over the {limit}-byte upload limit")
    await limits.hit(
        rt.sessions,
        user_id=user_id,
        action="upload",
        limit=rt.settings.rate_uploads_per_hour,
        window_seconds=3600,
        now=rt.clock(),
    )
    digest = hashlib.sha256(data).hexdigest()
    existing = await _by_hash(rt, user_id=user_id, digest=digest)
    if existing is not None and existing.status != DocumentStatus.failed:
        return existing, False
    if existing is not None:  # uploading a failed document again is how one retries it
        await delete(rt, user_id=user_id, document_id=existing.id)

    # Untrusted and CPU-bound: extraction runs in a child process with a time and memory
    # limit; splitting (to count chunks before anything is stored) runs in a thread.
    extracted = await rt.extractor.extract(filename, data)
    chunks = await asyncio.to_thread(_split_pages, rt, extracted.text, extracted.pages)
    if len(chunks) > rt.settings.max_document_chunks:
        raise too_large(
            f"{len(chunks):,} chunks", "MAX_DOCUMENT_CHUNKS", rt.settings.max_document_chunks
        )
    name = stored_name(filename)
    now = utcnow()
    doc = Document(
        id=uuid.uuid4(),
        user_id=user_id,
        title=(title or PurePath(name).stem)[:300],
        filename=name,
        media_type=MEDIA_TYPES[suffix_of(name)],
        sha256=digest,
        size_bytes=len(data),
        status=DocumentStatus.processing,
        chunk_count=0,
        page_count=len(extracted.pages) or None,
        ocr_confidence=extracted.ocr_confidence,
        text=extracted.text,
        pages=[list(p) for p in extracted.pages],
        created_at=now,
        updated_at=now,
    )
    try:
        async with rt.sessions.begin() as s:
            s.add(doc)
    except IntegrityError:  # the same bytes uploaded twice at the same moment
        existing = await _by_hash(rt, user_id=user_id, digest=digest)
        if existing is None:
            raise
        return existing, False
    task = rt.spawn(index_document(rt, doc.id))
    if wait:
        await asyncio.shield(task)
        return await get(rt, user_id=user_id, document_id=doc.id), True
    return DocumentOut.model_validate(doc), True


def stored_name(filename: str) -> str:
    """The file's own name (no folders), at most 300 characters, its extension kept."""
    name = PurePath(filename).name or "document"
    if len(name) > 300:
        suffix = suffix_of(name)
        name = name[: 300 - len(suffix)] + suffix
    return name


async def _by_hash(rt: Runtime, *, user_id: uuid.UUID, digest: str) -> DocumentOut | None:
    async with rt.sessions() as s:
        doc = await s.scalar(
            select(Document).where(Document.user_id == user_id, Document.sha256 == digest)
        )
        return DocumentOut.model_validate(doc) if doc else None


def _split_pages(rt: Runtime, body: str, pages: list) -> list[tuple[Span, int | None]]:
    """Chunks never straddle a page, so each chunk (and citation) has one page number:
    (span in `body`, page) pairs; page is None for formats without pages."""
    out: list[tuple[Span, int | None]] = []
    ranges = [(n, p) for n, p in enumerate(pages, start=1)] or [(None, (0, len(body)))]
    for number, (start, end) in ranges:
        for sp in split(
            body[start:end],
            chunk_size=rt.settings.rag_chunk_size,
            overlap=rt.settings.rag_chunk_overlap,
        ):
            out.append((Span(start + sp.start, start + sp.end), number))
    return out


INDEX_RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)  # waiting out a database outage, ~30 s


async def index_document(rt: Runtime, document_id: uuid.UUID) -> None:
    """Index a document, waiting out a database outage (chunk ids are deterministic, so a
    retry overwrites); otherwise a restart of PostgreSQL would leave it `processing`."""
    for delay in (*INDEX_RETRY_DELAYS, None):
        try:
            await _index_document(rt, document_id, last=delay is None)
            return
        except Exception as exc:
            if delay is None or not is_database_down(exc):
                raise
            log.warning("indexing document %s waits for the database", document_id)
            await asyncio.sleep(delay)


async def _index_document(rt: Runtime, document_id: uuid.UUID, *, last: bool = True) -> None:
    """Split, embed (in batches, off the event loop) and store a document's chunks."""
    from sqlalchemy import text as sql

    async with rt.sessions() as s:
        doc = await s.get(
            Document, document_id, options=[undefer(Document.text), undefer(Document.pages)]
        )
        if doc is None:
            return
        body, pages = doc.text, doc.pages
        user_id, title = doc.user_id, doc.title
    try:
        chunks = await asyncio.to_thread(_split_pages, rt, body, pages)
        texts = [body[sp.start : sp.end] for sp, _ in chunks]
        for first in range(0, len(texts), EMBED_BATCH):
            batch = texts[first : first + EMBED_BATCH]
            vectors = await rt.embeddings.aembed_documents(batch)
            rows = [
                ChunkRow(
                    id=chunk_id(document_id, first + i),
                    content=content,
                    embedding=vector,
                    chunk_index=first + i,
                    start=span.start,
                    end=span.end,
                    page=page,
                )
                for i, (content, vector, (span, page)) in enumerate(
                    zip(batch, vectors, chunks[first : first + EMBED_BATCH], strict=True)
                )
            ]
            await add_chunks(
                rt.engine, user_id=user_id, document_id=document_id, title=title, rows=rows
            )
        await _set_status(rt, document_id, DocumentStatus.ready, chunk_count=len(texts))
    except Exception as exc:  # any failure leaves the document failed, with its reason
        if not last and is_database_down(exc):
            raise  # index_document tries again once the database is back
        log.exception("indexing document %s failed", document_id)
        try:
            async with rt.engine.begin() as conn:
                await conn.execute(
                    sql(f"DELETE FROM {TABLE} WHERE document_id = :d"), {"d": document_id}
                )
            await _set_status(rt, document_id, DocumentStatus.failed, error=failure_reason(exc))
        except Exception:
            log.exception("could not mark document %s failed", document_id)


def failure_reason(exc: BaseException) -> str:
    """What the owner reads in `error`: what went wrong and what to do, never the exception
    text (it can hold SQL, addresses or the document's own words)."""
    import openai

    if is_database_down(exc):
        return "The database became unavailable while indexing; upload the file again."
    if isinstance(exc, openai.APIError | TimeoutError):
        return "The embedding service failed while indexing; upload the file again later."
    return (
        "Indexing failed because of an error on our side; upload the file again, and "
        "contact support if it keeps failing."
    )


async def _set_status(
    rt: Runtime,
    document_id: uuid.UUID,
    status: DocumentStatus,
    *,
    chunk_count: int = 0,
    error: str | None = None,
) -> None:
    async with rt.sessions.begin() as s:
        await s.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(status=status, chunk_count=chunk_count, error=error, updated_at=utcnow())
        )


async def resume_stale(rt: Runtime, *, older_than: timedelta = timedelta(minutes=5)) -> None:
    """Re-index documents left `processing` by a process that stopped mid-way."""
    async with rt.sessions.begin() as s:
        ids = list(
            await s.scalars(
                update(Document)
                .where(
                    Document.status == DocumentStatus.processing,
                    Document.updated_at < utcnow() - older_than,
                )
                .values(updated_at=utcnow())
                .returning(Document.id)
            )
        )
    for document_id in ids:
        rt.spawn(index_document(rt, document_id))


async def reindex_all(rt: Runtime, *, progress: Callable[[int, int], None] | None = None) -> int:
    """Index every stored document again (after `store.drop_store`); `progress(done, total)`
    is called before the first document and after each."""
    async with rt.sessions.begin() as s:
        ids = list(
            await s.scalars(
                update(Document).values(status=DocumentStatus.processing).returning(Document.id)
            )
        )
    for done, document_id in enumerate(ids):
        if progress:
            progress(done, len(ids))
        await index_document(rt, document_id)
    if progress:
        progress(len(ids), len(ids))
    return len(ids)


async def get(rt: Runtime, *, user_id: uuid.UUID, document_id: uuid.UUID) -> DocumentOut:
    async with rt.sessions() as s:
        doc = await s.scalar(
            select(Document).where(Document.id == document_id, Document.user_id == user_id)
        )
        if doc is None:
            raise DocumentNotFound()
        return DocumentOut.model_validate(doc)


async def list_page(rt: Runtime, *, user_id: uuid.UUID, limit: int, offset: int) -> DocumentPage:
    async with rt.sessions() as s:
        total = await s.scalar(
            select(func.count()).select_from(Document).where(Document.user_id == user_id)
        )
        rows = await s.scalars(
            select(Document)
            .where(Document.user_id == user_id)
            .order_by(Document.created_at.desc(), Document.id.desc())
            .limit(limit)
            .offset(offset)
        )
        items = [DocumentOut.model_validate(d) for d in rows]
    total = total or 0
    return DocumentPage(
        items=items, total=total, limit=limit, offset=offset, has_more=offset + len(items) < total
    )


async def delete(rt: Runtime, *, user_id: uuid.UUID, document_id: uuid.UUID) -> None:
    async with rt.sessions.begin() as s:
        doc = await s.scalar(
            select(Document)
            .where(Document.id == document_id, Document.user_id == user_id)
            .with_for_update()
        )
        if doc is None:
            raise DocumentNotFound()
        # Its chunks go with it (ON DELETE CASCADE), in this same transaction.
        await s.delete(doc)


async def has_ready_documents(rt: Runtime, *, user_id: uuid.UUID) -> bool:
    async with rt.sessions() as s:
        return bool(
            await s.scalar(
                select(Document.id)
                .where(Document.user_id == user_id, Document.status == DocumentStatus.ready)
                .limit(1)
            )
        )
