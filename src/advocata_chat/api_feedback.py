"""REST routes: 👍/👎 on answers, and their summary by prompt version."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from advocata_chat import feedback
from advocata_chat.deps import CurrentPrincipal, CurrentUser, RuntimeDep
from advocata_chat.errors import error_responses
from advocata_chat.feedback import FeedbackNotFound
from advocata_chat.responses import AUTH, CONV, CONVERSATION, DB, JSON_BODY
from advocata_chat.schemas import FeedbackIn, FeedbackOut, FeedbackSummary

router = APIRouter(prefix="/api/v1/chat")
# Feedback is on a message of a conversation: either may be missing (or someone else's).
FEEDBACK = (*CONVERSATION, FeedbackNotFound)


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
