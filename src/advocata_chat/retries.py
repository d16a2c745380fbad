"""The one retry policy for a database that went away: back off from 0.5 s to 2 s between
attempts, retry only a lost or refused connection (a bug in a query fails at once), and give
up after `seconds` (or never, for the event bridge that must come back by itself)."""

from __future__ import annotations

import logging

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_exponential,
)

from advocata_chat.errors import is_database_down

log = logging.getLogger(__name__)


def _log(what: str):
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: the database is unreachable (%s); retrying", what, exc)

    return before_sleep


def database_retries(what: str, *, seconds: float | None) -> AsyncRetrying:
    """`async for attempt in database_retries(...): with attempt: ...`"""
    return AsyncRetrying(
        retry=retry_if_exception(is_database_down),
        wait=wait_exponential(multiplier=0.5, min=0.5, max=2),
        stop=stop_never if seconds is None else stop_after_delay(seconds),
        before_sleep=_log(what),
        reraise=True,
    )
