"""REST route: a consultation as Markdown, DOCX or PDF."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from advocata_chat import conversations, export
from advocata_chat.deps import CurrentPrincipal, RuntimeDep
from advocata_chat.errors import error_responses
from advocata_chat.responses import AUTH, CONV, CONVERSATION, DB
from advocata_chat.schemas import EXPORT_EXAMPLE

router = APIRouter(prefix="/api/v1/chat")


@router.get(
    CONV + "/export",
    tags=["export"],
    response_class=Response,
    summary="Export a consultation (Markdown, DOCX or PDF)",
    responses={
        200: {
            "description": "The file, as an attachment",
            "content": {
                media: {"example": EXPORT_EXAMPLE} if fmt == "md" else {}
                for fmt, media in export.MEDIA.items()
            },
        },
        **error_responses(*AUTH, *DB, *CONVERSATION),
    },
)
async def export_conversation(
    conversation_id: uuid.UUID,
    who: CurrentPrincipal,
    rt: RuntimeDep,
    format: Annotated[Literal["md", "docx", "pdf"], Query(description="File format")] = "md",
):
    """The whole consultation with timestamps, cited sources and a disclaimer. Lawyers can
    export conversations shared with them."""
    conv = await conversations.get(
        rt.sessions, user_id=who.user_id, conversation_id=conversation_id, lawyer=who.lawyer
    )
    body, media = export.render(conv, format, tz=rt.settings.export_zone)
    name = f"advocata-consultation-{conversation_id}.{format}"
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
