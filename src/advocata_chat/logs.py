"""Structured logs: one JSON object per line, with the request id of the request being served.

Secrets and message content stay out of INFO logs: the only request data logged is the method
and path (with the `token` query parameter redacted, however its name is percent-encoded),
and services log ids, never text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A query string in a log line: from "?" up to whitespace or a quote.
_QUERY = re.compile(r"\?([^\s\"']*)")
# A JWT anywhere (header.payload.signature, the header starting with '{"'): a second net.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SECRET_PARAMS = {"token", "access_token"}


def _redact_query(match: re.Match) -> str:
    # Starlette decodes parameter names before `query_params["token"]` reads them, so
    # `?%74oken=` authenticates too: decide on the decoded name, as Starlette does.
    pairs = []
    for pair in match.group(1).split("&"):
        name, eq, value = pair.partition("=")
        if eq and unquote_plus(name).strip().lower() in _SECRET_PARAMS:
            value = "[redacted]"
        pairs.append(name + eq + value)
    return "?" + "&".join(pairs)


def redact(text: str) -> str:
    """`text` with token query parameters and anything shaped like a JWT replaced."""
    return _JWT.sub("[redacted]", _QUERY.sub(_redact_query, text))


class RequestId:
    """Take `X-Request-ID` from the client (or make one), log with it, and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _VALID_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class RedactTokens(logging.Filter):
    """Keep JWTs passed as `?token=` (WebSocket) out of the access and connection logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(fmt: str = "json", level: str = "info") -> None:
    """Route every logger (uvicorn's included) to one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    install_redaction()
