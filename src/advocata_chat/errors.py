"""One error hierarchy, rendered to HTTP in one place.

Every error body has the same shape: {"error": <human message>, "code": <machine code>,
"detail": <optional structured detail>}. The WebSocket sends the same fields in an
`error` frame.
"""

from __future__ import annotations

import inspect
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
    """A request the service refuses, with the status and machine code it is sent with."""

    status_code = 400
    code = "bad_request"
    # For the OpenAPI document: a message (and detail) as a client would receive them.
    example = "Bad request"
    example_detail: Any = None

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
    """The bearer token is missing, malformed, expired or wrongly signed."""

    status_code = 401
    code = "unauthorized"
    example = "Token has expired"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class NotFound(AppError):
    """No such resource, or it is someone else's: the two are indistinguishable."""

    status_code = 404
    code = "not_found"
    example = "Not found"


class Conflict(AppError):
    """The resource is not in a state that allows the request."""

    status_code = 409
    code = "conflict"


class InvalidInput(AppError):
    """Bad JSON, a missing or out-of-range field, a malformed UUID, an empty or too long
    message; `detail` lists each problem with its location."""

    status_code = 422
    code = "validation_error"
    example = "Invalid request: message_content: String should have at least 1 character"
    example_detail = [
        {
            "loc": ["body", "message_content"],
            "msg": "String should have at least 1 character",
            "type": "string_too_short",
        }
    ]


class PayloadTooLarge(AppError):
    """The request body is over `MAX_REQUEST_BYTES` (an upload: over `MAX_UPLOAD_BYTES`)."""

    status_code = 413
    code = "payload_too_large"
    example = "Request body is over the 1000000-byte limit"


_MODEL_DETAIL = {
    "user_message_id": "660f9511-f3ac-52e5-b827-557766551111",
    "retry": "POST /api/v1/chat/conversations/550e8400-e29b-41d4-a716-446655440000/reply",
}


class ModelError(AppError):
    """The model provider failed or its stream broke. The user message is stored
    (`detail.user_message_id`), a partial answer is stored with `status: failed`; ask for the
    answer again with `detail.retry`."""

    status_code = 502
    code = "model_error"
    example = "The model's answer broke off. Your message and the partial answer are saved."
    example_detail = _MODEL_DETAIL


class ModelUnavailable(ModelError):
    """The model provider is unreachable or rate limiting; the user message is stored."""

    status_code = 503
    code = "model_unavailable"
    example = "The language model could not be reached. Your message is saved; retry later."


class ModelTimeout(ModelError):
    """No first token within `OPENAI_FIRST_TOKEN_TIMEOUT_SECONDS`, or no whole answer within
    `OPENAI_TOTAL_TIMEOUT_SECONDS`; the user message is stored."""

    status_code = 504
    code = "model_timeout"
    example = "The language model took longer than 30 s for the first token."


class DatabaseUnavailable(AppError):
    """The database connection was lost; nothing half-written is kept. Retry after
    `Retry-After` seconds. On a turn, `detail.user_message_id` names a message that was
    already stored: ask for its answer with `detail.retry` instead of sending it again."""

    status_code = 503
    code = "database_unavailable"
    example = "The database is unavailable; nothing was changed by this request. Retry shortly."

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
    example = "Conversation not found"

    def __init__(self) -> None:
        super().__init__("Conversation not found")


def error_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can raise `errors`: one entry per status, with the
    `ErrorBody` schema, a line per machine code saying when it is sent, and an example of
    each code. The "when" is the first paragraph of the error class's docstring."""
    from advocata_chat.schemas import ErrorBody

    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        entry = out.setdefault(
            err.status_code,
            {"model": ErrorBody, "description": "", "content": {"application/json": {}}},
        )
        examples = entry["content"]["application/json"].setdefault("examples", {})
        if err.code in examples:
            continue
        when = " ".join((inspect.getdoc(err) or "").split("\n\n")[0].split())
        value: dict[str, Any] = {"error": err.example, "code": err.code}
        if err.example_detail is not None:
            value["detail"] = err.example_detail
        examples[err.code] = {"summary": err.code, "description": when, "value": value}
        lines = [entry["description"]] if entry["description"] else []
        entry["description"] = "\n".join([*lines, f"- `{err.code}`: {when}"])
    return out


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
    if exc.status_code == 400:
        # FastAPI refuses a body it cannot parse (not UTF-8, broken multipart) with a bare
        # 400; for a client that is one more invalid request, as a body that is not JSON is.
        err = InvalidInput(f"Invalid request: {exc.detail}")
        return _json(err.status_code, err.body())
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
