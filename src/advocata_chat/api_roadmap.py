"""REST routes for the seed's roadmap: templates, feedback, export, lawyer sharing,
regenerate and edit."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from advocata_chat import conversations, export, feedback, sharing, turns
from advocata_chat.api import _sse, _turn_errors, _wants_sse
from advocata_chat.deps import CurrentPrincipal, CurrentUser, RuntimeDep
from advocata_chat.schemas import (
    ConversationOut,
    ConversationSummary,
    EditMessage,
    ErrorBody,
    FeedbackIn,
    FeedbackOut,
    FeedbackSummary,
    Regenerate,
    ShareIn,
    ShareOut,
    TemplateOut,
)

_errors = {code: {"model": ErrorBody} for code in (401, 404, 422)}
router = APIRouter(prefix="/api/v1/chat", tags=["chat"], responses=_errors)
CONV = "/conversations/{conversation_id}"


@router.get("/templates", response_model=list[TemplateOut], tags=["templates"])
async def list_templates(user: CurrentUser, rt: RuntimeDep):
    """Legal conversation templates; create a conversation with `template_id` to apply one."""
    return [TemplateOut(**t.__dict__) for t in rt.templates.values()]


@router.post(CONV + "/regenerate", response_model=ConversationOut, responses=_turn_errors)
async def regenerate(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    body: Regenerate | None = None,
):
    """Answer the last question again. The previous answer is kept as a superseded version
    (see `include_superseded`) and its tokens stay counted."""
    use_rag = body.use_rag if body else True
    if _wants_sse(request):
        return await _sse(request, rt, user, conversation_id, None, use_rag, mode="regenerate")
    await turns.run_turn(
        rt,
        user_id=user,
        conversation_id=conversation_id,
        content=None,
        use_rag=use_rag,
        mode="regenerate",
    )
    return await conversations.get(rt.sessions, user_id=user, conversation_id=conversation_id)


@router.patch(
    CONV + "/messages/{message_id}", response_model=ConversationOut, responses=_turn_errors
)
async def edit_message(
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    body: EditMessage,
    user: CurrentUser,
    rt: RuntimeDep,
):
    """Edit the last user message and answer it again; the old question and answer are kept
    as superseded versions."""
    content = conversations.check_message(rt.settings, body.content, field="content")
    await turns.run_turn(
        rt,
        user_id=user,
        conversation_id=conversation_id,
        content=content,
        use_rag=body.use_rag,
        mode="edit",
        edit_id=message_id,
    )
    return await conversations.get(rt.sessions, user_id=user, conversation_id=conversation_id)


@router.put(CONV + "/messages/{message_id}/feedback", response_model=FeedbackOut, tags=["feedback"])
async def put_feedback(
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    body: FeedbackIn,
    user: CurrentUser,
    rt: RuntimeDep,
):
    """👍 (`up`) or 👎 (`down`) with an optional comment; sending again changes it."""
    return await feedback.put(
        rt.sessions,
        user_id=user,
        conversation_id=conversation_id,
        message_id=message_id,
        data=body,
    )


@router.get(CONV + "/messages/{message_id}/feedback", response_model=FeedbackOut, tags=["feedback"])
async def get_feedback(
    conversation_id: uuid.UUID, message_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep
):
    return await feedback.get(
        rt.sessions, user_id=user, conversation_id=conversation_id, message_id=message_id
    )


@router.delete(CONV + "/messages/{message_id}/feedback", status_code=204, tags=["feedback"])
async def delete_feedback(
    conversation_id: uuid.UUID, message_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep
):
    await feedback.delete(
        rt.sessions, user_id=user, conversation_id=conversation_id, message_id=message_id
    )
    return Response(status_code=204)


@router.get("/feedback/summary", response_model=FeedbackSummary, tags=["feedback"])
async def feedback_summary(who: CurrentPrincipal, rt: RuntimeDep):
    """Counts of 👍/👎 by answer-prompt version and model: your own, or everyone's for the
    `admin` and `prompt_engineer` roles."""
    everyone = who.role in ("admin", "prompt_engineer")
    return await feedback.summary(rt.sessions, user_id=who.user_id, everyone=everyone)


@router.get(
    CONV + "/export",
    tags=["export"],
    responses={200: {"content": {m: {} for m in export.MEDIA.values()}}},
)
async def export_conversation(
    conversation_id: uuid.UUID,
    who: CurrentPrincipal,
    rt: RuntimeDep,
    format: Annotated[Literal["md", "docx", "pdf"], Query()] = "md",
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


@router.post(CONV + "/shares", status_code=201, response_model=ShareOut, tags=["sharing"])
async def share(conversation_id: uuid.UUID, body: ShareIn, user: CurrentUser, rt: RuntimeDep):
    """Give a lawyer (a user whose token has `role: lawyer`) read access."""
    return await sharing.grant(
        rt.sessions, owner=user, conversation_id=conversation_id, grantee=body.user_id
    )


@router.get(CONV + "/shares", response_model=list[ShareOut], tags=["sharing"])
async def list_shares(conversation_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep):
    return await sharing.list_grants(rt.sessions, owner=user, conversation_id=conversation_id)


@router.delete(CONV + "/shares/{grantee_id}", status_code=204, tags=["sharing"])
async def revoke_share(
    conversation_id: uuid.UUID, grantee_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep
):
    """Revoke at once: the next request by that lawyer gets 404."""
    await sharing.revoke(
        rt.sessions, owner=user, conversation_id=conversation_id, grantee=grantee_id
    )
    return Response(status_code=204)


@router.get("/shared", response_model=list[ConversationSummary], tags=["sharing"])
async def shared_with_me(who: CurrentPrincipal, rt: RuntimeDep):
    """Conversations shared with you (lawyers only; empty for everyone else)."""
    return await sharing.shared_with(rt.sessions, lawyer=who.user_id, is_lawyer=who.lawyer)
