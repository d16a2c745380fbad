"""Security headers on every HTTP response.

No response may be sniffed into another type, framed (clickjacking) or leak its URL as a
referrer. The playground keeps a token in localStorage, so its pages may run only the script
this server sends and talk only to this server.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# CSP Level 3 `'self'` covers ws:// and wss:// to the page's own host, which the socket needs.
PLAYGROUND_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    # Answers read aloud play from blob: URLs of the fetched audio (issue 16).
    "media-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Swagger UI and ReDoc run an inline set-up script and load their own assets (a worker from a
# blob: URL for ReDoc): their pages only refuse framing and plugins.
DOCS_CSP = "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
# Everything else is JSON, an event stream or a download: nothing in it may run.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
API_HEADERS = {**BASE, "Content-Security-Policy": API_CSP}


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def headers_for(path: str, docs_paths: Iterable[str] = ()) -> dict[str, str]:
    if _under(path, "/playground"):
        csp = PLAYGROUND_CSP
    elif any(_under(path, p) for p in docs_paths):
        csp = DOCS_CSP
    else:
        csp = API_CSP
    return {**BASE, "Content-Security-Policy": csp}


class SecurityHeaders:
    """Adds `headers_for(path)` to each response, keeping any a route set itself."""

    def __init__(self, app: ASGIApp, docs_paths: Iterable[str | None] = ()) -> None:
        self.app = app
        self.docs_paths = [p for p in docs_paths if p]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope["path"], self.docs_paths)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in extra.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
