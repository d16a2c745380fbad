"""Security headers (issue 13, finding 10): every response refuses sniffing, framing and
referrers; the playground, which keeps a token in localStorage, runs under a strict CSP.

That the playground still works under its CSP is checked in a real browser in
test_playground_browser.py.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from advocata_chat.app import create_app

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def directives(response: httpx.Response) -> dict[str, str]:
    """The response's CSP as {directive: sources}."""
    policy = response.headers.get("content-security-policy", "")
    parts = (p.strip().split(None, 1) for p in policy.split(";") if p.strip())
    return {p[0]: (p[1] if len(p) > 1 else "") for p in parts}


def assert_common(response: httpx.Response) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    assert directives(response).get("frame-ancestors") == "'none'", response.request.url


@pytest.mark.parametrize(
    "path", ["/playground", "/playground/playground.js", "/playground/playground.css"]
)
async def test_playground_runs_only_its_own_script_and_talks_only_to_this_server(client, path):
    r = await client.get(path)
    assert r.status_code == 200
    assert_common(r)
    csp = directives(r)
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"  # no inline script, no eval, no other origin
    assert csp["connect-src"] == "'self'"
    assert csp["base-uri"] == "'none'" and csp["form-action"] == "'none'"


async def test_an_api_json_route_has_the_headers_and_runs_nothing(client, auth, alice):
    r = await client.get("/api/v1/chat/conversations", headers=auth(alice))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert_common(r)
    assert directives(r)["default-src"] == "'none'"


async def test_error_responses_have_the_headers(client, make_client, make_settings, auth, alice):
    refused = [
        await client.get("/api/v1/chat/conversations"),  # 401
        await client.get(f"/api/v1/chat/conversations/{uuid.uuid4()}", headers=auth(alice)),
        await client.post("/api/v1/chat/conversations", headers=auth(alice), json={"title": 5}),
        await client.get("/no/such/path"),
    ]
    assert [r.status_code for r in refused] == [401, 404, 422, 404]
    async with make_client(ws=False, max_request_bytes=1000) as small:
        # Refused by the body-size middleware, before any route runs.
        refused.append(
            await small.post("/api/v1/chat/conversations", content=b"x" * 2000, headers=auth(alice))
        )
    assert refused[-1].status_code == 413
    for r in refused:
        assert r.json()["code"], r.text
        assert_common(r)
        assert directives(r)["default-src"] == "'none'"

    # A 500 is rendered outside the middleware stack: it gets the headers all the same.
    app = create_app(make_settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.get("/boom")
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert_common(r)
    assert directives(r)["default-src"] == "'none'"


def http_routes(routes, prefix: str = ""):
    """(path, route) of every HTTP route, through included routers."""
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI keeps an included router whole
            inner = prefix + (route.include_context.prefix or "")
            yield from http_routes(route.original_router.routes, inner)
        elif isinstance(route, APIRoute | Route):  # not WebSocket routes: no HTTP answer
            yield prefix + route.path, route


async def test_every_route_in_the_route_table_has_the_headers(client):
    """Generated from the app's routes: a route added tomorrow is covered too."""
    checked = 0
    for path, route in http_routes(client.app.routes):
        for name in route.param_convertors:
            path = path.replace(f"{{{name}}}", str(uuid.uuid4()))
        for method in sorted(route.methods or ()):
            r = await client.request(method, path)
            assert r.status_code < 500, (method, path, r.text)
            assert_common(r)
            assert "content-security-policy" in r.headers, (method, path)
            checked += 1
    assert checked >= 30


async def test_interactive_docs_keep_their_inline_set_up_script(client):
    """Swagger UI and ReDoc start from an inline script: their CSP must not forbid it."""
    for path in ("/docs", "/redoc"):
        r = await client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert_common(r)
        csp = directives(r)
        assert "script-src" not in csp and "default-src" not in csp, csp
