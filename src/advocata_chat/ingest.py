"""One ingestion job: extract, split, embed and write one document (jobs.py runs it).

A job can run more than once for the same document: retried after a transient failure, or
taken over from a worker that died mid-way. Every step is safe to repeat. Extraction
stores the text and drops the uploaded bytes in one transaction; the chunks are written,
and the document marked `ready`, in one other (delete-then-insert), so a second run
replaces the first run's chunks instead of adding to them, and a run cut off anywhere
leaves the previous state whole. A document already `ready` is left alone, so a job that
finished just before its worker died is not run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.orm import undefer

from advocata_chat.errors import AppError, is_database_down
from advocata_chat.extract import too_large
from advocata_chat.models import Document, DocumentFile, DocumentStatus, utcnow
from advocata_chat.sandbox import REFUSALS, ExtractionTimeout
from advocata_chat.schemas import DocumentOut
from advocata_chat.splitter import Span, split
from advocata_chat.store import ChunkRow, replace_chunks

if TYPE_CHECKING:
    from advocata_chat.runtime import Runtime

log = logging.getLogger(__name__)

EMBED_BATCH = 32  # progress is reported per batch
# `error_code` of a failure on our side (the file itself may be fine).
INDEXING_FAILED = "indexing_failed"
# Refusals of the file, by `error_code`.
BAD_FILE: dict[str, type[AppError]] = {**REFUSALS, ExtractionTimeout.code: ExtractionTimeout}

Publish = Callable[[DocumentOut], Awaitable[None]]


class Transient(Exception):
    """A failure that may pass (provider 429/5xx, a lost database): the job is retried."""


def is_transient(exc: BaseException) -> bool:
    import openai

    if is_database_down(exc):
        return True
    if isinstance(exc, openai.RateLimitError | openai.InternalServerError):
        return True
    return isinstance(exc, openai.APIConnectionError)  # timeouts included


def is_bad_file(exc: BaseException) -> bool:
    """The file is what is wrong (unreadable, empty, too large, too slow to read), or OCR is
    not installed: retrying cannot help, and `?wait=true` answers with the same 4xx/503 an
    upload did when it extracted in the request."""
    return isinstance(exc, tuple(BAD_FILE.values()))


def chunk_id(document_id: uuid.UUID, index: int) -> uuid.UUID:
    return uuid.uuid5(document_id, str(index))


def split_pages(rt: Runtime, body: str, pages: list) -> list[tuple[Span, int | None]]:
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


async def index(
    rt: Runtime, document_id: uuid.UUID, *, last_attempt: bool, publish: Publish | None
) -> None:
    """One attempt. Raises `Transient` when it should be tried again later; any other
    failure ends with the document `failed` and a reason."""
    timeout = rt.settings.ingest_job_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            await _index(rt, document_id, publish)
    except TimeoutError:
        await _fail(
            rt,
            document_id,
            publish,
            code=INDEXING_FAILED,
            error=f"Indexing took longer than {timeout:g} s and was stopped "
            "(INGEST_JOB_TIMEOUT_SECONDS); upload a smaller file or split it",
        )
    except Exception as exc:
        if isinstance(exc, AppError) and is_bad_file(exc):
            await _fail(
                rt, document_id, publish, code=exc.code, error=exc.message, detail=exc.detail
            )
        elif is_transient(exc) and not last_attempt:
            log.warning("indexing document %s failed for now; it will be retried", document_id)
            with contextlib.suppress(Exception):  # the database may be what is down
                await _set(rt, document_id, publish, status=DocumentStatus.queued, progress=None)
            raise Transient(type(exc).__name__) from None  # no text: it may hold the document's
        else:
            log.exception("indexing document %s failed", document_id)
            await _fail(rt, document_id, publish, code=INDEXING_FAILED, error=failure_reason(exc))


async def _index(rt: Runtime, document_id: uuid.UUID, publish: Publish | None) -> None:
    async with rt.sessions() as s:
        doc = await s.get(
            Document, document_id, options=[undefer(Document.text), undefer(Document.pages)]
        )
        if doc is None or doc.status == DocumentStatus.ready:
            return  # deleted meanwhile, or done by a run that its worker did not report
        body, pages, filename = doc.text, doc.pages, doc.filename
        user_id, title = doc.user_id, doc.title
    await _set(
        rt,
        document_id,
        publish,
        status=DocumentStatus.processing,
        progress={"done": 0, "total": None, "unit": "chunks"},
    )
    if body is None:
        body, pages = await _extract(rt, document_id, filename)
        if body is None:
            return
    chunks = await asyncio.to_thread(split_pages, rt, body, pages)
    limit = rt.settings.max_document_chunks
    if len(chunks) > limit:
        raise too_large(f"{len(chunks):,} chunks", "MAX_DOCUMENT_CHUNKS", limit)
    texts = [body[sp.start : sp.end] for sp, _ in chunks]
    vectors: list[list[float]] = []
    for first in range(0, len(texts), EMBED_BATCH):
        vectors += await rt.index_embeddings.aembed_documents(texts[first : first + EMBED_BATCH])
        progress = {"done": len(vectors), "total": len(texts), "unit": "chunks"}
        await _set(rt, document_id, publish, status=DocumentStatus.processing, progress=progress)
    rows = [
        ChunkRow(chunk_id(document_id, i), content, vector, i, span.start, span.end, page)
        for i, (content, vector, (span, page)) in enumerate(
            zip(texts, vectors, chunks, strict=True)
        )
    ]
    async with rt.engine.begin() as conn:
        # The row lock orders this against a delete of the document, and against another
        # run of the same job (a worker taken for dead that was only slow).
        found = await conn.scalar(
            select(Document.id).where(Document.id == document_id).with_for_update()
        )
        if found is None:
            return
        await replace_chunks(conn, user_id=user_id, document_id=document_id, title=title, rows=rows)
        await conn.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(
                status=DocumentStatus.ready,
                chunk_count=len(rows),
                progress=None,
                error=None,
                error_code=None,
                error_detail=None,
                updated_at=utcnow(),
            )
        )
    await _announce(rt, document_id, publish)


async def _extract(rt: Runtime, document_id: uuid.UUID, filename: str) -> tuple[str | None, list]:
    """Read the stored upload in the sandbox (its time and memory limits), keep the text and
    drop the bytes, in one transaction."""
    async with rt.sessions() as s:
        data = await s.scalar(
            select(DocumentFile.data).where(DocumentFile.document_id == document_id)
        )
    if data is None:
        return None, []  # deleted meanwhile
    extracted = await rt.extractor.extract(filename, data)
    pages = [list(p) for p in extracted.pages]
    async with rt.sessions.begin() as s:
        await s.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(
                text=extracted.text,
                pages=pages,
                page_count=len(pages) or None,
                ocr_confidence=extracted.ocr_confidence,
                updated_at=utcnow(),
            )
        )
        await s.execute(delete(DocumentFile).where(DocumentFile.document_id == document_id))
    return extracted.text, pages


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


async def _fail(
    rt: Runtime,
    document_id: uuid.UUID,
    publish: Publish | None,
    *,
    code: str,
    error: str,
    detail: dict | None = None,
) -> None:
    from sqlalchemy import text as sql

    from advocata_chat.store import TABLE

    try:
        async with rt.engine.begin() as conn:
            await conn.execute(
                sql(f"DELETE FROM {TABLE} WHERE document_id = :d"), {"d": document_id}
            )
            await conn.execute(delete(DocumentFile).where(DocumentFile.document_id == document_id))
            await conn.execute(
                update(Document)
                .where(Document.id == document_id)
                .values(
                    status=DocumentStatus.failed,
                    chunk_count=0,
                    progress=None,
                    error=error,
                    error_code=code,
                    error_detail=detail,
                    updated_at=utcnow(),
                )
            )
    except Exception:
        log.exception("could not mark document %s failed", document_id)
        return
    await _announce(rt, document_id, publish)


async def _set(
    rt: Runtime,
    document_id: uuid.UUID,
    publish: Publish | None,
    *,
    status: DocumentStatus,
    progress: dict | None,
) -> None:
    async with rt.sessions.begin() as s:
        await s.execute(
            update(Document)
            .where(Document.id == document_id, Document.status != DocumentStatus.ready)
            .values(status=status, progress=progress, updated_at=utcnow())
        )
    await _announce(rt, document_id, publish)


async def _announce(rt: Runtime, document_id: uuid.UUID, publish: Publish | None) -> None:
    if publish is None:
        return
    try:
        async with rt.sessions() as s:
            doc = await s.get(Document, document_id)
            if doc is not None:
                await publish(DocumentOut.model_validate(doc))
    except Exception:  # a missed frame is not worth failing the job for
        log.warning("could not announce document %s", document_id, exc_info=True)
