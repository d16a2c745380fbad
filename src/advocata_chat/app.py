"""The FastAPI application."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi_offline import FastAPIOffline
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from advocata_chat import (
    api,
    api_documents,
    api_export,
    api_feedback,
    api_media,
    api_sharing,
    api_templates,
    api_turns,
    db,
    jobs,
    logs,
    playground,
    ws,
)
from advocata_chat.config import Settings, get_settings
from advocata_chat.errors import PayloadTooLarge, install_error_handlers, is_database_down
from advocata_chat.frames import document_frame, document_topic
from advocata_chat.headers import DOCS_CSP, SecurityHeaders
from advocata_chat.hub import Hub
from advocata_chat.runtime import start_runtime
from advocata_chat.schemas import DocumentOut, Health, Readiness

DESCRIPTION = """Legal consultations in Russian, grounded in the user's own documents: answers
cite their sources as `[n]`.

Every endpoint under `/api/v1` takes `Authorization: Bearer <JWT>` (`advocata-chat token
--user UUID` prints one for development) and sees only the caller's data: someone else's
conversation or document is a 404. Errors have one body, `{"error", "code", "detail"}`.

Answers stream over the WebSocket `/ws/chat/{conversation_id}?token=<JWT>`, or as Server-Sent
Events from the turn endpoints with `Accept: text/event-stream`. The whole contract, frames
and close codes included, is in the repository's `docs/api.md`."""

DOCS_ASSETS = "/static-offline-docs"  # where fastapi-offline's files are served
REDOC_URL = "/redoc"  # our own route (below), not fastapi-offline's

TAGS = [
    {"name": "chat", "description": "Conversations, messages and answers"},
    {"name": "templates", "description": "Legal conversation templates"},
    {"name": "feedback", "description": "👍/👎 on answers, by prompt version"},
    {"name": "export", "description": "A consultation as Markdown, DOCX or PDF"},
    {"name": "sharing", "description": "Read access for lawyers"},
    {"name": "voice", "description": "Questions by voice, answers read aloud"},
    {"name": "documents", "description": "The user's documents that answers are grounded in"},
    {"name": "search", "description": "What retrieval finds in the user's documents"},
    {"name": "prompts", "description": "The prompt versions in use (for prompt engineers)"},
    {"name": "ops", "description": "Liveness and readiness probes"},
]


class BodySizeLimit:
    """Refuse request bodies over the limit: at once when `Content-Length` says so, and by
    counting the bytes actually received otherwise (chunked transfer encoding declares no
    length). Once over, the client gets the 413 and the app reads an end of input."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Uploads are multipart: allow the file limit plus room for the form framing.
        self.max_upload_bytes = max_upload_bytes + 64_000

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        path = scope["path"].rstrip("/")
        # Uploads: documents, and photos with a message and voice messages.
        if path == "/api/v1/documents" or path.endswith(
            ("/messages/upload", "/voice", "/voice/uploads")
        ):
            limit = self.max_upload_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length and length.isdigit() and int(length) > limit:
            await self._refuse(scope, send, limit)
            return
        received, started, refused = 0, False, False

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await self._refuse(scope, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # the 413 went out; whatever the app answers to the cut-off is dropped
            started = True
            await send(message)

        await self.app(scope, counted, guarded)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int) -> None:
        err = PayloadTooLarge(f"Request body is over the {limit}-byte limit")
        # `connection: close`: the rest of the body is never read, so the connection ends.
        response = JSONResponse(err.body(), status_code=413, headers={"connection": "close"})
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def create_app(
    settings: Settings | None = None,
    *,
    llm: BaseChatModel | None = None,
    embeddings: tuple[Embeddings, str, int] | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not logging.getLogger().handlers:  # a worker process spawned by `serve --workers`
            logs.configure(settings.log_format, settings.log_level)
        logs.install_redaction()
        rt = app.state.runtime = await start_runtime(settings, llm=llm, embeddings=embeddings)
        hub = app.state.hub = Hub(db.psycopg_conninfo(settings.database_url or ""))
        app.state.sockets = ws.SocketCount()
        await hub.start()

        async def publish(doc: DocumentOut) -> None:
            hub.publish(document_topic(doc.user_id), document_frame(doc))

        async with contextlib.AsyncExitStack() as stack:
            if settings.ingest_worker_in_api:
                await stack.enter_async_context(
                    jobs.running(rt, concurrency=settings.ingest_concurrency, publish=publish)
                )
            try:
                yield
            finally:
                await stack.aclose()
                await hub.stop()
                await rt.close()

    # Swagger UI and ReDoc come from files inside the fastapi-offline wheel, not a CDN.
    app = FastAPIOffline(
        title="Advocata Chat",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        redoc_url=None,  # below, with a content security policy
        # Swagger UI would otherwise send the schema's URL to an online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(logs.RequestId)  # outside the size limit: a 413 carries the id too
    # Added last, so it is outermost: the refusals above get the headers too.
    app.add_middleware(
        SecurityHeaders,
        # FastAPIOffline serves /docs itself and leaves `app.docs_url` None.
        docs_paths=["/docs", REDOC_URL, app.swagger_ui_oauth2_redirect_url],
    )
    app.include_router(api.router)
    app.include_router(api_turns.router)
    app.include_router(api_templates.router)
    app.include_router(api_feedback.router)
    app.include_router(api_export.router)
    app.include_router(api_sharing.router)
    app.include_router(api_documents.router)
    app.include_router(api_media.router)  # photos with a message, voice in and out
    app.include_router(ws.router)
    app.include_router(playground.router)

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        # ReDoc's sidebar shows a logo from its vendor's CDN: images from elsewhere are
        # refused, so the page makes no request off this host (the logo just hides).
        page.headers["Content-Security-Policy"] = f"{DOCS_CSP}; img-src 'self' data: blob:"
        return page

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/healthz", tags=["ops"], summary="Liveness", response_model=Health)
    async def healthz() -> dict[str, str]:
        """200 once the process has started (database and migrations included)."""
        # Uvicorn accepts connections only after the lifespan start-up (database, migrations)
        # has finished, so answering at all means ready.
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="Readiness",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Database down or not migrated"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        """200 when the database answers and its schema is at the code's migration head;
        503 otherwise, saying which."""
        rt = request.app.state.runtime
        head = db.current_head()
        try:
            async with rt.engine.connect() as conn:
                current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        except Exception as exc:
            if not is_database_down(exc):
                raise
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable", "migrations": None}, 503
            )
        ok = current == head
        body = {
            "status": "ready" if ok else "unavailable",
            "database": "ok",
            "migrations": "head" if ok else f"{current} (head is {head})",
        }
        return JSONResponse(body, 200 if ok else 503)

    return app
