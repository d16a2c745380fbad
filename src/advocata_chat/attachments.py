"""Images (and other documents) in the chat: what a user message carries and how its
attachments reach the answer.

A message names documents the user uploaded (`POST /api/v1/documents`, or the multipart
`POST .../messages/upload`, which uploads them the same way: the same limits, the same
uploads-per-hour count). The attachments are stored on the message, so a reply, a
regenerate or an edit answers with them again.

For the answer, each attached document's extracted text (the OCR text of a photo) is given
to the chain as numbered sources ahead of what retrieval finds, one per page, so an answer
cites the photo as `[1]` like any source. With a vision-capable model (`OPENAI_VISION`),
the images themselves go to the model as image content blocks as well: the sources stay,
since a citation needs a numbered source to point to.
"""

from __future__ import annotations

import asyncio
import base64
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun
from langchain_core.documents import Document as SourceDoc
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda
from sqlalchemy import select
from sqlalchemy.orm import undefer

from advocata_chat import documents
from advocata_chat.errors import InvalidInput
from advocata_chat.models import AttachmentOriginal, Document, DocumentStatus, Message
from advocata_chat.runtime import Runtime

VISION_MAX_SIDE = 2048  # pixels; larger photos are scaled down before they go to the model
FOUND_BY = "attachment"  # a source's `found_by`: attached to the message, not retrieved


def check_count(ids: list, *, limit: int, field_name: str = "attachments") -> list:
    if len(ids) > limit:
        raise InvalidInput(
            f"A message may carry at most {limit} attachments (MAX_ATTACHMENTS); got {len(ids)}",
            detail=[{"loc": ["body", field_name], "limit": limit}],
        )
    return ids


async def resolve(rt: Runtime, *, user_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[dict]:
    """What the message stores: the caller's own documents, in the order given. Someone
    else's id is refused exactly like one that does not exist."""
    ids = check_count(list(dict.fromkeys(ids)), limit=rt.settings.max_attachments)
    if not ids:
        return []
    async with rt.sessions() as s:
        rows = await s.scalars(
            select(Document).where(Document.id.in_(ids), Document.user_id == user_id)
        )
        found = {d.id: d for d in rows}
    for doc_id, doc in found.items():
        if doc.status not in (DocumentStatus.ready, DocumentStatus.failed):
            # Uploaded a moment ago: its indexing job is queued or running. The message is
            # answered from the document's text, so wait for the job (INGEST_WAIT_SECONDS).
            await documents.wait_done(rt, user_id=user_id, document_id=doc_id)
            async with rt.sessions() as s:
                found[doc_id] = await s.get(Document, doc_id)
    out = []
    for i, doc_id in enumerate(ids):
        doc = found.get(doc_id)
        if doc is None or doc.status == DocumentStatus.failed:
            why = "not found" if doc is None else "failed to process"
            raise InvalidInput(
                f"Attachment {doc_id} {why}: attach documents you uploaded "
                "(POST /api/v1/documents)",
                detail=[{"loc": ["body", "attachments", i], "document_id": str(doc_id)}],
            )
        out.append(
            {
                "document_id": str(doc.id),
                "title": doc.title,
                "filename": doc.filename,
                "media_type": doc.media_type,
                "page_count": doc.page_count,
                "ocr_confidence": doc.ocr_confidence,
            }
        )
    return out


async def keep_original(rt: Runtime, *, document_id: uuid.UUID, media_type: str, data: bytes):
    """Keep an uploaded image's bytes for a vision-capable model (documents store only the
    extracted text). Other files, and an image kept before, are left alone."""
    if not media_type.startswith("image/"):
        return
    async with rt.sessions.begin() as s:
        if await s.get(AttachmentOriginal, document_id) is None:
            s.add(AttachmentOriginal(document_id=document_id, media_type=media_type, data=data))


@dataclass
class Attached:
    """A turn's attachments, ready for the chain."""

    sources: list[SourceDoc] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # data: URLs, for a vision model

    def __bool__(self) -> bool:
        return bool(self.sources or self.images)


async def for_message(rt: Runtime, *, user_id: uuid.UUID, message: Message) -> Attached:
    """The sources (and, with OPENAI_VISION, the images) of a user message's attachments."""
    ids = [uuid.UUID(a["document_id"]) for a in message.attachments or []]
    if not ids:
        return Attached()
    async with rt.sessions() as s:
        docs = {
            d.id: d
            for d in await s.scalars(
                select(Document)
                .where(Document.id.in_(ids), Document.user_id == user_id)
                .options(undefer(Document.text), undefer(Document.pages))
            )
        }
        originals = {}
        if rt.settings.openai_vision:
            originals = {
                o.document_id: o
                for o in await s.scalars(
                    select(AttachmentOriginal).where(AttachmentOriginal.document_id.in_(ids))
                )
            }
    attached = Attached()
    for doc_id in ids:  # a document deleted since the message was sent is simply gone
        doc = docs.get(doc_id)
        if doc is None:
            continue
        attached.sources.extend(_page_sources(doc))
        if (original := originals.get(doc_id)) is not None:
            attached.images.append(await asyncio.to_thread(_data_url, original))
    return attached


def _page_sources(doc: Document) -> list[SourceDoc]:
    if not doc.text:  # not indexed (yet): nothing to quote
        return []
    pages = doc.pages or [(0, len(doc.text))]
    out = []
    for number, (start, end) in enumerate(pages, start=1):
        text = doc.text[start:end]
        if not text.strip():
            continue
        out.append(
            SourceDoc(
                page_content=text,
                metadata={
                    "document_id": str(doc.id),
                    "chunk_id": None,  # the whole page, not one indexed chunk
                    "title": doc.title,
                    "page": number if doc.pages else None,
                    "start": start,
                    "end": end,
                    "score": None,
                    "found_by": FOUND_BY,
                },
            )
        )
    return out


def _data_url(original: AttachmentOriginal) -> str:
    """The image as a data: URL, as JPEG or PNG at most VISION_MAX_SIDE pixels a side (a
    HEIC or TIFF is converted: providers take only the common web formats)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(original.data)) as img:
        img = ImageOps.exif_transpose(img)
        img.thumbnail((VISION_MAX_SIDE, VISION_MAX_SIDE))
        buf = io.BytesIO()
        if img.mode in ("RGBA", "LA", "P"):
            img.save(buf, "PNG")
            kind = "png"
        else:
            img.convert("RGB").save(buf, "JPEG", quality=88)
            kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buf.getvalue()).decode()}"


class AttachedRetriever(BaseRetriever):
    """The attachments' sources first, then what the user's retriever finds (none when the
    turn does not search: `use_rag: false`, or no ready documents)."""

    attached: list[SourceDoc]
    base: BaseRetriever | None = None

    def _get_relevant_documents(self, query: str, *, run_manager=None) -> list[SourceDoc]:
        raise NotImplementedError("async only")

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[SourceDoc]:
        found = []
        if self.base is not None:
            found = await self.base.ainvoke(query, config={"callbacks": run_manager.get_child()})
        return [*self.attached, *found]


def with_images(llm: BaseChatModel, images: list[str]) -> Runnable:
    """The answer model, shown the images: they join the question (the last human message)
    as image content blocks."""

    def add(prompt: PromptValue) -> list[BaseMessage]:
        messages = prompt.to_messages()
        for i in range(len(messages) - 1, -1, -1):
            if isinstance(messages[i], HumanMessage):
                text = messages[i].text
                blocks = [{"type": "image_url", "image_url": {"url": u}} for u in images]
                messages[i] = HumanMessage(content=[{"type": "text", "text": text}, *blocks])
                break
        return messages

    return RunnableLambda(add).with_config(run_name="attach_images") | llm


def wrap(
    rt: Runtime, *, retriever: BaseRetriever, attached: Attached, search: bool
) -> tuple[BaseRetriever, Runnable]:
    """The retriever and answer model of a turn with attachments."""
    llm: Runnable = rt.llm
    if attached.images and rt.settings.openai_vision and not rt.offline:
        llm = with_images(rt.llm, attached.images)
    return AttachedRetriever(attached=attached.sources, base=retriever if search else None), llm
