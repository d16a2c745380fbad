"""Per-user rate limits and token quota, kept in PostgreSQL so they hold across processes."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from advocata_chat.config import Settings
from advocata_chat.errors import AppError
from advocata_chat.models import Conversation, Message


class RateLimited(AppError):
    """Over `RATE_MESSAGES_PER_MINUTE` (turns) or `RATE_UPLOADS_PER_HOUR` (uploads) for this
    user; retry after `Retry-After` seconds."""

    status_code = 429
    code = "rate_limited"
    example = "Too many message requests: the limit is 30 per 60 s"
    example_detail = {"limit": 30, "window_seconds": 60, "retry_after": 17}


class QuotaExceeded(AppError):
    """The user's `TOKEN_QUOTA` for the period is spent; checked before the model is
    called, so nothing is stored."""

    status_code = 429
    code = "quota_exceeded"
    example = "Token quota spent: 2000000 of 2000000 tokens in the last 86400 s"
    example_detail = {"used": 2000000, "quota": 2000000, "period_seconds": 86400}


_HIT = text(
    """
    INSERT INTO rate_counters (user_id, action, window_start, count)
    VALUES (:user_id, :action, :window_start, 1)
    ON CONFLICT (user_id, action, window_start)
    DO UPDATE SET count = rate_counters.count + 1
    RETURNING count
    """
)


async def hit(
    sessions: async_sessionmaker,
    *,
    user_id: uuid.UUID,
    action: str,
    limit: int,
    window_seconds: int,
) -> None:
    """Count one `action` in the current fixed window; 429 with Retry-After over the limit."""
    if limit <= 0:
        return
    now = datetime.now(UTC)
    start = now.timestamp() // window_seconds * window_seconds
    window_start = datetime.fromtimestamp(start, UTC)
    async with sessions.begin() as s:
        count = await s.scalar(
            _HIT, {"user_id": user_id, "action": action, "window_start": window_start}
        )
        if count == 1:  # first hit of a new window: drop this user's old ones
            await s.execute(
                text(
                    "DELETE FROM rate_counters "
                    "WHERE user_id = :u AND action = :a AND window_start < :w"
                ),
                {"u": user_id, "a": action, "w": window_start},
            )
    if count > limit:
        retry = max(1, math.ceil(start + window_seconds - now.timestamp()))
        raise RateLimited(
            f"Too many {action} requests: the limit is {limit} per {window_seconds} s",
            detail={"limit": limit, "window_seconds": window_seconds, "retry_after": retry},
            headers={"Retry-After": str(retry)},
        )


async def tokens_used(
    sessions: async_sessionmaker, *, user_id: uuid.UUID, period_seconds: int
) -> int:
    since = datetime.now(UTC) - timedelta(seconds=period_seconds)
    query = (
        select(func.coalesce(func.sum(Message.token_count), 0))
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.user_id == user_id, Message.created_at >= since)
    )
    async with sessions() as s:
        return int(await s.scalar(query))


async def check_quota(
    sessions: async_sessionmaker, settings: Settings, *, user_id: uuid.UUID
) -> None:
    """Refuse a turn before the model is called when the user's token quota is spent."""
    if settings.token_quota <= 0:
        return
    used = await tokens_used(
        sessions, user_id=user_id, period_seconds=settings.token_quota_period_seconds
    )
    if used >= settings.token_quota:
        raise QuotaExceeded(
            f"Token quota spent: {used} of {settings.token_quota} tokens in the last "
            f"{settings.token_quota_period_seconds} s",
            detail={
                "used": used,
                "quota": settings.token_quota,
                "period_seconds": settings.token_quota_period_seconds,
            },
            headers={"Retry-After": "3600"},
        )
