"""Document services: upload (store the file, queue its indexing), list, get, delete.

Indexing itself is a job on the queue (jobs.py), run by ingest.py."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from pathlib import PurePath

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from advocata_chat import jobs, limits
from advocata_chat.errors import NotFound, PayloadTooLarge
from advocata_chat.extract import refuse_early, suffix_of
from advocata_chat.ingest import BAD_FILE
from advocata_chat.models import Document, DocumentFile, DocumentStatus, utcnow
from advocata_chat.runtime import Runtime
from advocata_chat.schemas import DocumentOut, DocumentPage

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
WAIT_POLL_SECONDS = 0.1


class DocumentNotFound(NotFound):
    example = "Document not found"

    def __init__(self) -> None:
        super().__init__("Document not found")


async def upload(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    filename: str,
    data: bytes,
    title: str | None = None,
    wait: bool = False,
) -> tuple[DocumentOut, bool]:
    """Store a document and queue its indexing. Returns (document, created).

    With `wait`, answers once the job is done; a file the job refuses (unreadable, empty,
    too large) is then deleted and its refusal raised, as when extraction ran here."""
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
    refuse_early(filename, data)
    digest = hashlib.sha256(data).hexdigest()
    existing = await _by_hash(rt, user_id=user_id, digest=digest)
    if existing is not None and existing.status != DocumentStatus.failed:
        return existing, False
    if existing is not None:  # uploading a failed document again is how one retries it
        await delete(rt, user_id=user_id, document_id=existing.id)

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
        status=DocumentStatus.queued,
        chunk_count=0,
        text=None,
        pages=[],
        created_at=now,
        updated_at=now,
    )
    try:
        async with rt.sessions.begin() as s:
            s.add(doc)
            await s.flush()
            # In the database rather than on a disk: any worker, on any machine, can take
            # the job. Dropped once the text is extracted (ingest.py).
            s.add(DocumentFile(document_id=doc.id, data=data))
    except IntegrityError:  # the same bytes uploaded twice at the same moment
        existing = await _by_hash(rt, user_id=user_id, digest=digest)
        if existing is None:
            raise
        return existing, False
    # Not in the insert's transaction (procrastinate has its own connections): a document
    # whose enqueue fails here is queued again by a worker (jobs.py, orphans).
    await jobs.enqueue(rt, doc.id)
    if wait:
        return await wait_done(rt, user_id=user_id, document_id=doc.id), True
    return DocumentOut.model_validate(doc), True


async def wait_done(rt: Runtime, *, user_id: uuid.UUID, document_id: uuid.UUID) -> DocumentOut:
    """Poll until the job has finished (or INGEST_WAIT_SECONDS have passed)."""
    deadline = asyncio.get_running_loop().time() + rt.settings.ingest_wait_seconds
    while True:
        doc = await get(rt, user_id=user_id, document_id=document_id)
        final = doc.status in (DocumentStatus.ready, DocumentStatus.failed)
        if final or asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(WAIT_POLL_SECONDS)
    if doc.status == DocumentStatus.failed and doc.error_code in BAD_FILE:
        async with rt.sessions() as s:
            detail = await s.scalar(select(Document.error_detail).where(Document.id == document_id))
        await delete(rt, user_id=user_id, document_id=document_id)
        raise BAD_FILE[doc.error_code](doc.error or "", detail=detail)
    return doc


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


async def reindex_all(rt: Runtime) -> list[uuid.UUID]:
    """Queue every stored document for indexing again (after `store.drop_store`), one job
    each, so that workers share the work; a document not yet extracted is extracted first."""
    async with rt.sessions.begin() as s:
        ids = list(
            await s.scalars(
                update(Document)
                # Not the files refused as unreadable: they have nothing to index.
                .where(or_(Document.text.is_not(None), Document.status != DocumentStatus.failed))
                .values(
                    status=DocumentStatus.queued, progress=None, chunk_count=0, updated_at=utcnow()
                )
                .returning(Document.id)
            )
        )
    for document_id in ids:
        await jobs.enqueue(rt, document_id)
    return ids


async def counts(rt: Runtime, ids: list[uuid.UUID]) -> dict[str, int]:
    """How many of these documents are in each status."""
    async with rt.sessions() as s:
        rows = await s.execute(
            select(Document.status, func.count())
            .where(Document.id.in_(ids))
            .group_by(Document.status)
        )
        return {status: n for status, n in rows.all()}


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
