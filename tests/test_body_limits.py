"""Request bodies over the limit are refused on the bytes received, against the real server:
a chunked body declares no length, so only counting what arrives can stop it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from advocata_chat.auth import mint_token
from tests.chunked import post_chunked
from tests.server import Server

UPLOAD_LIMIT = 2_000_000


@pytest.fixture(scope="module")
def server(database_url):
    srv = Server(database_url, MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT)).wait_ready()
    yield srv
    srv.stop()


def body(first: bytes, total: int) -> Iterator[bytes]:
    yield first
    for _ in range(total // 65536):
        yield b"x" * 65536


def answer(response: bytes) -> tuple[int, dict]:
    head, _, rest = response.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(rest)


@pytest.mark.parametrize(
    ("path", "content_type", "first", "total"),
    [
        # 50 MB of JSON against MAX_REQUEST_BYTES (1 MB): read whole before a 422, before.
        ("/api/v1/chat/conversations", "application/json", b'{"initial_message": "', 50_000_000),
        # 100 MB of multipart against MAX_UPLOAD_BYTES (2 MB here): read whole, before.
        (
            "/api/v1/documents",
            "multipart/form-data; boundary=XyZ",
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\n",
            100_000_000,
        ),
    ],
)
def test_a_chunked_body_is_refused_while_it_is_still_being_sent(
    server, settings, path, content_type, first, total
):
    token = mint_token(settings, user_id=uuid.uuid4())
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    response, sent = post_chunked(server.port, path, headers, body(first, total))
    status, error = answer(response)
    assert status == 413 and error["code"] == "payload_too_large", response[:300]
    assert b"connection: close" in response.lower()
    # The answer came while the client was still sending: most of the body never left it.
    assert sent < total // 2, sent
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_small_chunked_body_is_still_accepted(server, settings):
    token = mint_token(settings, user_id=uuid.uuid4())
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    chunks = [b'{"title": ', b'"chunked"}']
    response, sent = post_chunked(server.port, "/api/v1/chat/conversations", headers, chunks)
    status, conversation = answer(response)
    assert status == 201 and conversation["title"] == "chunked", response[:300]
