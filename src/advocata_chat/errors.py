"""One error hierarchy, rendered to HTTP in one place.

Every error body has the same shape: {"error": <human message>, "code": <machine code>,
"detail": <optional structured detail>}. The WebSocket sends the same fields in an
`error` frame.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from advocata_chat.headers import API_HEADERS

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, detail: Any = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = headers

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code}
        if self.detail is not None:
            body["detail"] = self.detail
        return body


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class InvalidInput(AppError):
    status_code = 422
    code = "validation_error"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class ModelError(AppError):
    """The language model failed. The user's message is already stored."""

    status_code = 502
    code = "model_error"


class ModelUnavailable(ModelError):
    status_code = 503
    code = "model_unavailable"


class ModelTimeout(ModelError):
    status_code = 504
    code = "model_timeout"


class DatabaseUnavailable(AppError):
    status_code = 503
    code = "database_unavailable"

    def __init__(self, *, conversation_id=None, user_message_id=None) -> None:
        if user_message_id is None:
            super().__init__(
                "The database is unavailable; nothing was changed by this request. Retry shortly.",
                headers={"Retry-After": "2"},
            )
            return
        # The connection was lost after the user's message was stored: resending it would
        # store it twice, so the client is told to ask for the answer instead.
        super().__init__(
            "The database became unavailable after your message was stored; do not send it "
            "again: ask for the answer with the `retry` request shortly.",
            detail={
                "user_message_id": str(user_message_id),
                "retry": f"POST /api/v1/chat/conversations/{conversation_id}/reply",
            },
            headers={"Retry-After": "2"},
        )


def is_database_down(exc: BaseException) -> bool:
    """A lost or refused database connection, as opposed to a bug in a query."""
    import psycopg
    from sqlalchemy import exc as sa

    if isinstance(exc, sa.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc.orig, psycopg.OperationalError | psycopg.InterfaceError
        )
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | sa.TimeoutError)


class ConversationNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Conversation not found")


def _json(status: int, body: dict, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=jsonable_encoder(body), headers=headers)


async def _app_error(_: Request, exc: AppError) -> JSONResponse:
    return _json(exc.status_code, exc.body(), exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p != "body") or "request"
    body = {"error": f"Invalid request: {where}: {first['msg']}", "code": "validation_error"}
    return _json(422, {**body, "detail": detail})


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
    code = codes.get(exc.status_code, "http_error")
    return _json(exc.status_code, {"error": str(exc.detail), "code": code}, exc.headers)


async def _database(_: Request, exc: Exception) -> JSONResponse:
    if not is_database_down(exc):
        raise exc  # a real bug: let the 500 handler log it
    log.warning("database unavailable: %s", type(exc).__name__)
    err = DatabaseUnavailable()
    return _json(err.status_code, err.body(), err.headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    # Sent from outside the middleware stack, so the security headers are added here.
    return _json(500, {"error": "Internal server error", "code": "internal_error"}, API_HEADERS)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    import psycopg
    from sqlalchemy import exc as sa

    for kind in (sa.DBAPIError, sa.TimeoutError, psycopg.OperationalError, psycopg.InterfaceError):
        app.add_exception_handler(kind, _database)
    app.add_exception_handler(Exception, _unexpected)
