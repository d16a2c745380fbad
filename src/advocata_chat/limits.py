"""Per-user rate limits and token quota, kept in PostgreSQL so they hold across processes."""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from advocata_chat.config import Settings
from advocata_chat.errors import AppError, is_database_down
from advocata_chat.models import Conversation, Message, TokenReservation
from advocata_chat.tokens import count_tokens

log = logging.getLogger(__name__)


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
    now: float | None = None,
) -> None:
    """Count one `action` in the current fixed window; 429 with Retry-After over the limit.

    `now` is seconds since the epoch (the runtime's clock); windows start at multiples of
    `window_seconds`."""
    if limit <= 0:
        return
    now = time.time() if now is None else now
    start = now // window_seconds * window_seconds
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
        retry = max(1, math.ceil(start + window_seconds - now))
        raise RateLimited(
            f"Too many {action} requests: the limit is {limit} per {window_seconds} s",
            detail={"limit": limit, "window_seconds": window_seconds, "retry_after": retry},
            headers={"Retry-After": str(retry)},
        )


def _spent(user_id: uuid.UUID, period_seconds: int):
    since = datetime.now(UTC) - timedelta(seconds=period_seconds)
    return (
        select(func.coalesce(func.sum(Message.token_count), 0))
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.user_id == user_id, Message.created_at >= since)
    )


async def tokens_used(
    sessions: async_sessionmaker, *, user_id: uuid.UUID, period_seconds: int
) -> int:
    async with sessions() as s:
        return int(await s.scalar(_spent(user_id, period_seconds)))


# The system prompt, a template and a custom instruction, and a pending question whose length
# is not known when the turn is admitted (reply, regenerate).
PROMPT_ALLOWANCE = 1000


def turn_estimate(settings: Settings, *, question: str | None, use_rag: bool) -> int:
    """What one turn may bill, on the high side: a full answer, the whole history window,
    the retrieved context and the question. The reservation settles to what was billed."""
    return (
        settings.openai_max_tokens
        + settings.history_max_tokens
        + (settings.rag_max_context_tokens if use_rag else 0)
        + count_tokens(question or "")
        + PROMPT_ALLOWANCE
    )


@dataclass(frozen=True)
class Reservation:
    id: uuid.UUID
    tokens: int


async def reserve(
    sessions: async_sessionmaker, settings: Settings, *, user_id: uuid.UUID, tokens: int
) -> Reservation | None:
    """Admit a turn before the model is called, and hold `tokens` for it until it settles.

    A turn is admitted while the tokens spent in the period plus those reserved by turns in
    progress are under the quota, so concurrent sends see each other: together they overshoot
    the quota by at most one turn, as one send after another may. None when there is no quota.
    """
    if settings.token_quota <= 0:
        return None
    period = settings.token_quota_period_seconds
    now = datetime.now(UTC)
    # A reservation outlives the longest turn: waiting for the conversation, then the answer.
    ttl = settings.turn_wait_seconds + settings.openai_total_timeout_seconds + 60
    held = select(func.coalesce(func.sum(TokenReservation.tokens), 0)).where(
        TokenReservation.user_id == user_id, TokenReservation.expires_at > now
    )
    async with sessions.begin() as s:
        # One admission at a time per user, across processes; released at commit.
        await s.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"token_quota:{user_id}"},
        )
        # One statement, one snapshot: an answer stored meanwhile (its tokens counted, its
        # reservation gone in the same commit) is seen whole or not at all.
        spent, reserved = (
            await s.execute(
                select(_spent(user_id, period).scalar_subquery(), held.scalar_subquery())
            )
        ).one()
        if spent + reserved >= settings.token_quota:
            raise QuotaExceeded(
                f"Token quota spent: {spent} of {settings.token_quota} tokens in the last "
                f"{period} s"
                + (f", and {reserved} held by answers in progress" if reserved else ""),
                detail={
                    "used": int(spent),
                    "reserved": int(reserved),
                    "quota": settings.token_quota,
                    "period_seconds": period,
                },
                headers={"Retry-After": "3600"},
            )
        await s.execute(
            delete(TokenReservation).where(
                TokenReservation.user_id == user_id, TokenReservation.expires_at <= now
            )
        )
        row = TokenReservation(
            id=uuid.uuid4(),
            user_id=user_id,
            tokens=tokens,
            expires_at=now + timedelta(seconds=ttl),
        )
        s.add(row)
    return Reservation(id=row.id, tokens=tokens)


async def settle(s: AsyncSession, reservation: Reservation | None) -> None:
    """Drop the reservation in the transaction that stores the turn's billed tokens (which
    may be 0), so the quota never counts both, or neither."""
    if reservation is not None:
        await s.execute(delete(TokenReservation).where(TokenReservation.id == reservation.id))


async def release(sessions: async_sessionmaker, reservation: Reservation | None) -> None:
    """Drop the reservation of a turn that stored no answer. If the database is down, it
    lapses at its expiry instead."""
    if reservation is None:
        return
    try:
        async with sessions.begin() as s:
            await settle(s, reservation)
    except Exception as exc:
        if not is_database_down(exc):
            raise
        log.warning("token reservation %s will lapse: database unavailable", reservation.id)
