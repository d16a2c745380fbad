"""The interactive docs work offline: headless Chromium renders `/docs` (Swagger UI) and
`/redoc` from a real `advocata-chat serve` on 127.0.0.1, and the pages request nothing from
any other host.

Uses Debian's `chromium` (the `page` fixture in conftest.py); skips when it is not installed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from tests.server import Server


@pytest.fixture(scope="module")
def server(database_url):
    srv = Server(database_url).wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def operations(server) -> int:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    return sum(len(ops) for ops in paths.values())


def _record(page) -> list[str]:
    """Every URL the page (and its workers) sends to the network, from the first request on.

    Routed requests are the ones the browser really sends: a request its page's content
    security policy refuses never gets here. Anything not for this host is aborted."""
    urls: list[str] = []

    def route(route) -> None:
        urls.append(route.request.url)
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    page.context.route("**/*", route)
    return urls


def _elsewhere(urls: list[str]) -> list[str]:
    return [
        u
        for u in urls
        if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname != "127.0.0.1"
    ]


def test_swagger_ui_renders_every_operation_offline(server, operations, page, tmp_path):
    urls = _record(page)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{server.url}/")  # `/` redirects to the docs
    page.wait_for_selector(".opblock")
    assert page.url == f"{server.url}/docs"
    assert page.locator(".opblock").count() == operations
    assert "Start a conversation" in page.inner_text("#swagger-ui")

    # An operation opens, with its Russian example and its declared errors.
    page.click(
        "#operations-chat-send_message_api_v1_chat_conversations__conversation_id__messages_post"
    )
    body = page.locator(".opblock.is-open")
    body.locator(".responses-table").first.wait_for()
    text = body.inner_text()
    assert "Могу ли я получить компенсацию" in text
    for status in ("401", "404", "409", "413", "422", "429", "502", "503", "504"):
        assert body.locator(f"tr.response[data-code='{status}']").count() == 1, status
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)

    assert urls and not _elsewhere(urls), _elsewhere(urls)
    assert any(u.endswith("/openapi.json") for u in urls)
    assert not errors, errors


def test_redoc_renders_every_operation_offline(server, operations, page, tmp_path):
    urls = _record(page)
    page.goto(f"{server.url}/redoc")
    page.wait_for_selector("[data-section-id^='operation/']")
    assert page.locator("[data-section-id^='operation/']").count() == operations
    assert "Консультация по ДТП" in page.inner_text("body")
    page.screenshot(path=str(tmp_path / "redoc.png"), full_page=False)
    assert urls and not _elsewhere(urls), _elsewhere(urls)
