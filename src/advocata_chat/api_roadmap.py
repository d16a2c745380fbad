"""REST routes for the seed's roadmap: templates, feedback, export, lawyer sharing,
regenerate and edit."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from advocata_chat import conversations, export, feedback, sharing, turns
from advocata_chat.api import (
    AUTH,
    CONVERSATION,
    DB,
    JSON_BODY,
    TURN,
    TURN_OK,
    _sse,
    _wants_sse,
)
from advocata_chat.deps import CurrentPrincipal, CurrentUser, RuntimeDep
from advocata_chat.errors import error_responses
from advocata_chat.feedback import FeedbackNotFound
from advocata_chat.lease import CannotEdit, MessageNotFound
from advocata_chat.schemas import (
    EXPORT_EXAMPLE,
    ConversationOut,
    ConversationSummary,
    EditMessage,
    FeedbackIn,
    FeedbackOut,
    FeedbackSummary,
    Regenerate,
    ShareIn,
    ShareOut,
    TemplateOut,
)
from advocata_chat.sharing import ShareNotFound

# One tag per operation: client generators make one API class per tag.
router = APIRouter(prefix="/api/v1/chat")
CONV = "/conversations/{conversation_id}"
# Feedback is on a message of a conversation: either may be missing (or someone else's).
FEEDBACK = (*CONVERSATION, FeedbackNotFound)


@router.get(
    "/templates",
    response_model=list[TemplateOut],
    tags=["templates"],
    summary="List conversation templates",
    responses=error_responses(*AUTH),
)
async def list_templates(user: CurrentUser, rt: RuntimeDep):
    """Legal conversation templates (ДТП/ОСАГО, отказ страховой, права потребителей, трудовой
    спор, аренда, долг по расписке): a title, the system-prompt addition, suggested questions
    and the facts to collect. Create a conversation with `template_id` to apply one."""
    return [TemplateOut(**t.__dict__) for t in rt.templates.values()]


@router.post(
    CONV + "/regenerate",
    response_model=ConversationOut,
    tags=["chat"],
    summary="Answer the last question again",
    responses={**TURN_OK, **error_responses(*AUTH, *DB, *CONVERSATION, *JSON_BODY, *TURN)},
)
async def regenerate(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    body: Regenerate | None = None,
):
    """Answer the last user question again. The previous answer is kept as a superseded
    version (see `include_superseded`) and its tokens stay counted. With
    `Accept: text/event-stream` the new answer streams as Server-Sent Events."""
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
    CONV + "/messages/{message_id}",
    response_model=ConversationOut,
    tags=["chat"],
    summary="Edit the last user message and answer it again",
    responses=error_responses(
        *AUTH, *DB, *CONVERSATION, MessageNotFound, *JSON_BODY, CannotEdit, *TURN
    ),
)
async def edit_message(
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    body: EditMessage,
    user: CurrentUser,
    rt: RuntimeDep,
):
    """Replace the conversation's last user message with `content` and answer it again. The
    old question and its answer are kept as superseded versions (`replaces_id` points back)
    and leave the visible chat and the model's history."""
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


@router.put(
    CONV + "/messages/{message_id}/feedback",
    response_model=FeedbackOut,
    tags=["feedback"],
    summary="Rate an answer",
    responses=error_responses(*AUTH, *DB, *FEEDBACK, *JSON_BODY),
)
async def put_feedback(
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    body: FeedbackIn,
    user: CurrentUser,
    rt: RuntimeDep,
):
    """👍 (`up`) or 👎 (`down`) on an assistant answer, with an optional comment; sending
    again changes it. Rating a user message is a 422."""
    return await feedback.put(
        rt.sessions,
        user_id=user,
        conversation_id=conversation_id,
        message_id=message_id,
        data=body,
    )


@router.get(
    CONV + "/messages/{message_id}/feedback",
    response_model=FeedbackOut,
    tags=["feedback"],
    summary="Get the rating of an answer",
    responses=error_responses(*AUTH, *DB, *FEEDBACK),
)
async def get_feedback(
    conversation_id: uuid.UUID, message_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep
):
    """The caller's rating of this answer; 404 when there is none."""
    return await feedback.get(
        rt.sessions, user_id=user, conversation_id=conversation_id, message_id=message_id
    )


@router.delete(
    CONV + "/messages/{message_id}/feedback",
    status_code=204,
    tags=["feedback"],
    summary="Remove the rating of an answer",
    responses=error_responses(*AUTH, *DB, *FEEDBACK),
)
async def delete_feedback(
    conversation_id: uuid.UUID, message_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep
):
    """Remove the caller's rating of this answer; 404 when there is none."""
    await feedback.delete(
        rt.sessions, user_id=user, conversation_id=conversation_id, message_id=message_id
    )
    return Response(status_code=204)


@router.get(
    "/feedback/summary",
    response_model=FeedbackSummary,
    tags=["feedback"],
    summary="Ratings by prompt version",
    responses=error_responses(*AUTH, *DB),
)
async def feedback_summary(who: CurrentPrincipal, rt: RuntimeDep):
    """Counts of 👍/👎 by answer-prompt version and model: your own, or everyone's for the
    `admin` and `prompt_engineer` roles."""
    everyone = who.role in ("admin", "prompt_engineer")
    return await feedback.summary(rt.sessions, user_id=who.user_id, everyone=everyone)


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


@router.post(
    CONV + "/shares",
    status_code=201,
    response_model=ShareOut,
    tags=["sharing"],
    summary="Share a conversation with a lawyer",
    responses=error_responses(*AUTH, *DB, *CONVERSATION, *JSON_BODY),
)
async def share(conversation_id: uuid.UUID, body: ShareIn, user: CurrentUser, rt: RuntimeDep):
    """Give a lawyer (a user whose token has `role: lawyer`) read access: they can read the
    conversation and export it, and every write stays a 404 for them. Sharing again is
    harmless; sharing with yourself is a 422."""
    return await sharing.grant(
        rt.sessions, owner=user, conversation_id=conversation_id, grantee=body.user_id
    )


@router.get(
    CONV + "/shares",
    response_model=list[ShareOut],
    tags=["sharing"],
    summary="List who a conversation is shared with",
    responses=error_responses(*AUTH, *DB, *CONVERSATION),
)
async def list_shares(conversation_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep):
    """The lawyers the owner has shared this conversation with."""
    return await sharing.list_grants(rt.sessions, owner=user, conversation_id=conversation_id)


@router.delete(
    CONV + "/shares/{grantee_id}",
    status_code=204,
    tags=["sharing"],
    summary="Revoke a lawyer's access",
    responses=error_responses(*AUTH, *DB, *CONVERSATION, ShareNotFound),
)
async def revoke_share(
    conversation_id: uuid.UUID, grantee_id: uuid.UUID, user: CurrentUser, rt: RuntimeDep
):
    """Revoke at once: the next request by that lawyer gets a 404."""
    await sharing.revoke(
        rt.sessions, owner=user, conversation_id=conversation_id, grantee=grantee_id
    )
    return Response(status_code=204)


@router.get(
    "/shared",
    response_model=list[ConversationSummary],
    tags=["sharing"],
    summary="Conversations shared with me",
    responses=error_responses(*AUTH, *DB),
)
async def shared_with_me(who: CurrentPrincipal, rt: RuntimeDep):
    """Conversations shared with you (lawyers only; empty for everyone else)."""
    return await sharing.shared_with(rt.sessions, lawyer=who.user_id, is_lawyer=who.lawyer)
