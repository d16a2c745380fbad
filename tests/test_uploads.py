"""Uploads that are small on disk and huge once opened, content that does not match its
extension, and names that broke the upload. Each gets a clear 413/415/422 in the one error
body, nothing is stored, and the server goes on answering (extraction runs in a child
process with a time and memory limit)."""

from __future__ import annotations

import codecs
import logging
import uuid

import httpx
import pytest
from langchain_core.embeddings import Embeddings
from sqlalchemy import text

from advocata_chat.app import create_app
from advocata_chat.llm import build_embeddings
from tests import bombs
from tests.test_documents import CONTRACT, FONT, pdf_bytes, search, upload

DOCS = "/api/v1/documents"


async def stored_for(client, user: uuid.UUID) -> tuple[int, int]:
    """(documents, chunks) in the database for this user."""
    async with client.app.state.runtime.engine.connect() as conn:
        docs = await conn.scalar(
            text("SELECT count(*) FROM documents WHERE user_id = :u"), {"u": user}
        )
        chunks = await conn.scalar(
            text("SELECT count(*) FROM chunks WHERE user_id = :u"), {"u": user}
        )
    return docs, chunks


async def refused(client, headers, user, name, data, *, status, code, limit=None) -> dict:
    r = await upload(client, headers, name, data)
    assert r.status_code == status, (name, r.text)
    body = r.json()
    assert body["code"] == code and body["error"], body
    if limit is not None:
        assert body["detail"]["limit"] == limit and limit in body["error"], body
    assert await stored_for(client, user) == (0, 0)
    # The server still answers, and still extracts an ordinary file.
    assert (await client.get("/healthz")).status_code == 200
    return body


async def still_uploads(client, headers, user) -> None:
    r = await upload(client, headers, "ok.txt", f"{uuid.uuid4()}\n{CONTRACT}".encode())
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    assert (await client.delete(f"{DOCS}/{r.json()['id']}", headers=headers)).status_code == 204


async def test_docx_zip_bombs_are_refused_before_they_inflate(make_client, auth, alice):
    h = auth(alice)
    bomb = bombs.docx_with_zero_part(64)  # 64 MB of zeros in about 100 KB
    assert len(bomb) < 200_000
    async with make_client(ws=False) as client:
        await refused(
            client,
            h,
            alice,
            "zeros.docx",
            bomb,
            status=413,
            code="document_too_large",
            limit="MAX_ZIP_RATIO",
        )
        # A body of one paragraph repeated: 1 MB of word/document.xml in about 40 KB.
        body = bombs.docx_with_big_body(1_000_000)
        assert len(body) < 60_000
        await refused(
            client,
            h,
            alice,
            "body.docx",
            body,
            status=413,
            code="document_too_large",
            limit="MAX_ZIP_RATIO",
        )
        await still_uploads(client, h, alice)
    async with make_client(
        ws=False, max_zip_ratio=10_000, max_docx_uncompressed_bytes=32_000_000
    ) as client:
        await refused(
            client,
            h,
            alice,
            "zeros.docx",
            bomb,
            status=413,
            code="document_too_large",
            limit="MAX_DOCX_UNCOMPRESSED_BYTES",
        )


async def test_a_child_that_outgrows_its_memory_is_stopped(make_client, auth, alice):
    h = auth(alice)
    limits = {"max_zip_ratio": 1e9, "max_docx_uncompressed_bytes": 10**10}
    # python-docx holds every part in memory: 200 MB of zeros cannot fit in 250 MB.
    async with make_client(ws=False, extract_memory_bytes=250_000_000, **limits) as client:
        await refused(
            client,
            h,
            alice,
            "zeros.docx",
            bombs.docx_with_zero_part(200, level=1),
            status=413,
            code="document_too_large",
            limit="EXTRACT_MEMORY_BYTES",
        )
        await still_uploads(client, h, alice)


async def test_pdfs_with_too_many_pages_or_too_much_content_are_refused(make_client, auth, alice):
    h = auth(alice)
    async with make_client(ws=False) as client:
        many = bombs.pdf_many_pages(2500)
        await refused(
            client,
            h,
            alice,
            "many.pdf",
            many,
            status=413,
            code="document_too_large",
            limit="MAX_PDF_PAGES",
        )
        # 100 pages drawing one 4 MB stream: 400 MB of content to parse, from 28 KB.
        shared = bombs.pdf_shared_stream(100, 4_000_000)
        assert len(shared) < 40_000
        await refused(
            client,
            h,
            alice,
            "shared.pdf",
            shared,
            status=413,
            code="document_too_large",
            limit="MAX_PDF_STREAM_BYTES",
        )
        # One stream that inflates past pypdf's own 75 MB limit (LimitReachedError, a 500
        # before).
        await refused(
            client,
            h,
            alice,
            "huge.pdf",
            bombs.pdf_one_huge_stream(80_000_000),
            status=413,
            code="document_too_large",
            limit="MAX_PDF_STREAM_BYTES",
        )
        await still_uploads(client, h, alice)


async def test_extraction_that_runs_too_long_is_killed(make_client, auth, alice):
    h = auth(alice)
    # With the content limit lifted, the shared-stream PDF takes minutes to parse.
    async with make_client(
        ws=False, extract_timeout_seconds=1, max_pdf_stream_bytes=10**9
    ) as client:
        await refused(
            client,
            h,
            alice,
            "slow.pdf",
            bombs.pdf_shared_stream(100, 4_000_000),
            status=422,
            code="extraction_timeout",
            limit="EXTRACT_TIMEOUT_SECONDS",
        )
        await still_uploads(client, h, alice)


async def test_text_and_chunk_limits_per_document(make_client, auth, alice):
    h = auth(alice)
    varied = bombs.docx_with_big_body(1_000_000, varied=True)  # real-looking, ~900 chunks
    async with make_client(ws=False, max_document_chunks=100) as client:
        await refused(
            client,
            h,
            alice,
            "long.docx",
            varied,
            status=413,
            code="document_too_large",
            limit="MAX_DOCUMENT_CHUNKS",
        )
    async with make_client(ws=False, max_document_chars=2_000) as client:
        await refused(
            client,
            h,
            alice,
            "long.txt",
            (CONTRACT * 10).encode(),
            status=413,
            code="document_too_large",
            limit="MAX_DOCUMENT_CHARS",
        )
        if FONT.exists():
            await refused(
                client,
                h,
                alice,
                "long.pdf",
                pdf_bytes([CONTRACT] * 10),
                status=413,
                code="document_too_large",
                limit="MAX_DOCUMENT_CHARS",
            )
        await still_uploads(client, h, alice)


ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(56) + b"\x00\x01" * 64
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(200)


@pytest.mark.parametrize(
    ("name", "make", "says"),
    [
        ("report.txt", lambda: bombs.pdf(1, b"BT /F1 12 Tf 72 720 Td (x) Tj ET"), "PDF"),
        ("notes.md", lambda: ELF, "program"),
        ("page.html", lambda: EXE, "Windows program"),
        ("contract.txt", lambda: CONTRACT.encode() + b"\x00\x01\x02garbage", "binary"),
        ("contract.pdf", lambda: bombs.docx(["Договор"]), "ZIP"),
        ("contract.docx", lambda: bombs.pdf(1, b"BT ET"), "PDF"),
        ("contract.docx", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "legacy"),
        ("table.docx", lambda: _zip_without_document(), "word/document.xml"),
    ],
)
async def test_content_must_match_the_extension(client, auth, alice, name, make, says):
    body = await refused(
        client, auth(alice), alice, name, make(), status=415, code="unsupported_file"
    )
    assert says in body["error"], body


def _zip_without_document() -> bytes:
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    return out.getvalue()


async def test_utf16_text_with_a_byte_order_mark_is_read(client, auth, alice):
    h = auth(alice)
    r = await upload(client, h, "notepad.txt", codecs.BOM_UTF16_LE + CONTRACT.encode("utf-16-le"))
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    [hit, *_] = await search(client, h, "Сколько стоят работы?")
    assert "164 800" in hit["content"]


async def test_a_1000_character_filename_keeps_its_extension(client, auth, alice):
    h = auth(alice)
    r = await upload(client, h, "я" * 996 + ".txt", CONTRACT.encode())
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["filename"] == "я" * 296 + ".txt" and doc["media_type"] == "text/plain"
    assert len(doc["title"]) <= 300
    # An extension that is itself 1000 characters is simply not a supported one.
    r = await upload(client, h, "a." + "x" * 998, b"other bytes")
    assert r.status_code == 415 and r.json()["code"] == "unsupported_file"
    assert len(r.json()["error"]) < 200


class WrongSizeEmbeddings(Embeddings):
    """An embedding provider answering with vectors of the wrong size, so the chunk insert
    fails inside PostgreSQL with the document's text among its parameters."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[0.1] * 8 for _ in texts]

    def embed_query(self, text: str) -> list[float]:
        return [0.1] * 8


async def test_a_failed_document_shows_a_reason_and_no_log_holds_its_text(
    make_settings, make_client, auth, alice, caplog
):
    h = auth(alice)
    secret = "Паспорт 36 09 512877, выдан ОВД Тверского района.\n"
    data = (secret + CONTRACT).encode()
    # The configured embedder's name and size, so the store opens; its vectors are wrong.
    _, name, dims = build_embeddings(make_settings())
    app = create_app(make_settings(), embeddings=(WrongSizeEmbeddings(), name, dims))
    with caplog.at_level(logging.DEBUG):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                doc = (await upload(client, h, "passport.txt", data)).json()
    assert doc["status"] == "failed", doc
    assert doc["error"].startswith("Indexing failed because of an error on our side"), doc
    assert "512877" not in doc["error"] and "INSERT" not in doc["error"]
    assert "indexing document" in caplog.text  # the failure is logged, for us...
    assert "512877" not in caplog.text and "Тверского" not in caplog.text  # ...without the text
    # Uploading the same file again, once indexing works, is how the owner retries.
    async with make_client(ws=False) as client:
        r = await upload(client, h, "passport.txt", data)
        assert r.status_code == 201 and r.json()["status"] == "ready", r.text
        assert r.json()["id"] != doc["id"]
        assert (await client.get(DOCS, headers=h)).json()["total"] == 1
