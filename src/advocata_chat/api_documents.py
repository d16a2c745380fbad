"""REST routes for documents and search."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from advocata_chat import attachments, documents
from advocata_chat.api import AUTH, DB, JSON_BODY, PARAMS
from advocata_chat.deps import CurrentUser, RuntimeDep
from advocata_chat.documents import DocumentNotFound
from advocata_chat.errors import InvalidInput, PayloadTooLarge, error_responses
from advocata_chat.extract import EmptyDocument, UnreadableFile, UnsupportedFile
from advocata_chat.limits import RateLimited
from advocata_chat.ocr import OcrUnavailable
from advocata_chat.retrieval import hit_to_document, hybrid_search
from advocata_chat.schemas import (
    DocumentOut,
    DocumentPage,
    SearchRequest,
    SearchResponse,
    SearchResult,
)

router = APIRouter(prefix="/api/v1")
DOCUMENT = (DocumentNotFound, InvalidInput)  # a document id in the path
UPLOAD = (
    PayloadTooLarge,
    UnsupportedFile,
    InvalidInput,
    UnreadableFile,
    EmptyDocument,
    OcrUnavailable,
)


@router.post(
    "/documents",
    status_code=201,
    tags=["documents"],
    response_model=DocumentOut,
    responses={
        200: {"model": DocumentOut, "description": "The same file was already uploaded"},
        **error_responses(*AUTH, *DB, *UPLOAD, RateLimited),
    },
    summary="Upload a document",
    description="Upload a .pdf, .docx, .txt, .md or .html file, or a photo or scan "
    "(.png, .jpg, .jpeg, .tif, .tiff, .heic) (multipart field `file`). Images and PDF pages "
    "without a text layer are read by OCR (Russian and English; `ocr_confidence`). "
    "The file is stored and its indexing queued (status `queued`, then `processing` with "
    "`progress`, then `ready`, or `failed` with `error` and `error_code`); with "
    "`?wait=true` the response comes once it is done, and a file that cannot be read is "
    "refused with its 4xx, nothing stored. The same bytes uploaded again return the "
    "existing document with 200. Uploads per hour are limited by `RATE_UPLOADS_PER_HOUR`.",
)
async def upload_document(
    user: CurrentUser,
    rt: RuntimeDep,
    response: Response,
    file: Annotated[UploadFile, File(description="The document")],
    title: Annotated[
        str | None, Form(max_length=300, description="Shown in citations; default: file name")
    ] = None,
    wait: Annotated[
        bool, Query(description="Answer once indexing is done (status `ready` or `failed`)")
    ] = False,
):
    title = (title or "").replace("\x00", "").strip() or None
    doc, created = await upload_file(rt, user, file, title=title, wait=wait)
    if not created:
        response.status_code = 200
    return doc


async def read_upload(file: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes, refused past `limit` without reading further."""
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"The file is over the {limit}-byte upload limit")
    return data


async def upload_file(
    rt, user: uuid.UUID, file: UploadFile, *, title: str | None = None, wait: bool = False
):
    """Upload one multipart file as the user's document (this route, and photos sent with
    a message): `(document, created)`."""
    data = await read_upload(file, rt.settings.max_upload_bytes)
    filename = (file.filename or "").replace("\x00", "")
    doc, created = await documents.upload(
        rt, user_id=user, filename=filename, data=data, title=title, wait=wait
    )
    # A photo's own bytes, for a vision-capable model when it is attached.
    await attachments.keep_original(rt, document_id=doc.id, media_type=doc.media_type, data=data)
    return doc, created


@router.get(
    "/documents",
    response_model=DocumentPage,
    tags=["documents"],
    summary="List documents",
    responses=error_responses(*AUTH, *DB, *PARAMS),
)
async def list_documents(
    user: CurrentUser,
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="Documents to skip")] = 0,
):
    """The caller's documents, newest first, with their indexing status."""
    return await documents.list_page(rt, user_id=user, limit=limit, offset=offset)


@router.get(
    "/documents/{document_id}",
    response_model=DocumentOut,
    tags=["documents"],
    summary="Get a document",
    responses=error_responses(*AUTH, *DB, *DOCUMENT),
)
async def get_document(document_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep):
    """One document: poll `status` (`queued`, `processing` with `progress`, `ready`, or
    `failed` with `error`) after an upload without `?wait=true`."""
    return await documents.get(rt, user_id=user, document_id=document_id)


@router.delete(
    "/documents/{document_id}",
    status_code=204,
    tags=["documents"],
    summary="Delete a document",
    responses=error_responses(*AUTH, *DB, *DOCUMENT),
)
async def delete_document(document_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep):
    """Delete the document and its chunks in one transaction: later answers no longer find
    or cite it."""
    await documents.delete(rt, user_id=user, document_id=document_id)
    return Response(status_code=204)


@router.post(
    "/search",
    response_model=SearchResponse,
    tags=["search"],
    summary="Search the caller's documents",
    responses=error_responses(*AUTH, *DB, *JSON_BODY),
)
async def search(body: SearchRequest, user: CurrentUser, rt: RuntimeDep):
    """What the model would see: the user's chunks for a query, and which retriever found
    each (vector, full-text, or both)."""
    params = replace(rt.search, top_k=body.top_k)
    hits = await hybrid_search(
        engine=rt.engine,
        store=rt.store,
        embeddings=rt.embeddings,
        user_id=user,
        question=body.query,
        params=params,
        limit=body.top_k,
    )
    results = []
    for hit in hits:
        meta = hit_to_document(hit).metadata
        results.append(SearchResult(**{**meta, "content": hit.content}))
    return SearchResponse(query=body.query, results=results)
