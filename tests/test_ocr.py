"""Scanned documents: photos (PNG, JPEG, TIFF, HEIC) and PDF pages without a text layer are
read by Tesseract (Russian + English) inside the extraction sandbox, indexed with their page
numbers and OCR confidence, and cited like any document. Without the engine such uploads are
refused with `ocr_unavailable`, never stored empty.

The images are drawn here with Pillow and the DejaVu font shipped in the package."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from PIL import Image, ImageDraw, ImageFont

from advocata_chat.config import PROJECT_ROOT
from tests.test_documents import chunk_rows, search, upload
from tests.test_rag import ask

FONT = PROJECT_ROOT / "src" / "advocata_chat" / "fonts" / "DejaVuSans.ttf"
RECEIPT = [
    "ООО «Ромашка»",
    "Кассовый чек № 1842",
    "Хлеб ржаной 120 руб.",
    "Молоко 95 руб.",
    "Итого: 4 250 руб.",
    "Спасибо за покупку!",
]
ACT = [
    "АКТ приёмки выполненных работ",
    "Работы приняты без замечаний.",
    "Сумма к оплате: 82 400 рублей.",
]


def _has_russian_ocr() -> bool:
    if shutil.which("tesseract") is None:
        return False
    out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout
    return "rus" in out.split()


needs_ocr = pytest.mark.skipif(
    not _has_russian_ocr(),
    reason="tesseract with Russian data is not installed "
    "(apt-get install tesseract-ocr tesseract-ocr-rus tesseract-ocr-eng)",
)


def text_image(lines: list[str], *, size: tuple[int, int] = (1000, 600)) -> Image.Image:
    """Black text on white, 40 px DejaVu: what a decent phone photo of a receipt gives."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 40)
    for i, line in enumerate(lines):
        draw.text((50, 40 + 80 * i), line, font=font, fill=0)
    return image


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    if fmt == "HEIF":
        from pillow_heif import register_heif_opener

        register_heif_opener()
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def scanned_pdf(text_page: str, scan: Image.Image) -> bytes:
    """Page 1 has a text layer; page 2 is only a full-page picture of text (a scan)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, text_page)
    pdf.add_page()
    pdf.image(scan, x=0, y=0, w=210, h=297)
    return bytes(pdf.output())


def a4_scan(lines: list[str]) -> Image.Image:
    image = Image.new("L", (1240, 1754), 255)  # A4 at 150 dpi
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 36)
    for i, line in enumerate(lines):
        draw.text((100, 150 + 70 * i), line, font=font, fill=0)
    return image


async def refused(client, headers, user, name, data, *, status, code, limit=None) -> dict:
    """The upload is refused with this status and code, and nothing of it is stored."""
    r = await upload(client, headers, name, data)
    assert r.status_code == status, (name, r.text)
    body = r.json()
    assert body["code"] == code and body["error"], body
    if limit is not None:
        assert body["detail"]["limit"] == limit and limit in body["error"], body
    listed = (await client.get("/api/v1/documents", headers=headers)).json()
    assert listed["total"] == 0, listed
    return body


@needs_ocr
async def test_a_photographed_receipt_is_read_indexed_and_cited(client, auth, alice):
    h = auth(alice)
    r = await upload(client, h, "чек.png", encoded(text_image(RECEIPT), "PNG"))
    doc = r.json()
    assert r.status_code == 201 and doc["status"] == "ready", r.text
    assert doc["media_type"] == "image/png" and doc["page_count"] == 1
    assert 0.5 < doc["ocr_confidence"] <= 1
    # The recognised words are what is indexed, on page 1.
    [(content, _, _, page)] = await chunk_rows(client, doc["id"])
    assert "Итого" in content and "4 250" in content and "Кассовый чек" in content
    assert page == 1
    # The document JSON says the same when read back.
    again = (await client.get(f"/api/v1/documents/{doc['id']}", headers=h)).json()
    assert again["ocr_confidence"] == doc["ocr_confidence"]

    # The offline model answers by quoting: the amount, cited to page 1 of the photo.
    _, answer = await ask(client, h, "Сколько итого по чеку?")
    assert "Итого: 4 250" in answer["content"] and "[1]" in answer["content"]
    cites = answer["citations"]
    assert cites and all(c["document_id"] == doc["id"] and c["page"] == 1 for c in cites)
    assert any("4 250" in c["quote"] for c in cites)


@needs_ocr
async def test_a_scanned_page_of_a_pdf_is_read_and_keeps_its_page_number(client, auth, alice):
    h = auth(alice)
    data = scanned_pdf("Договор подряда № 7. Страница с текстовым слоем.", a4_scan(ACT))
    r = await upload(client, h, "act.pdf", data)
    doc = r.json()
    assert r.status_code == 201 and doc["status"] == "ready", r.text
    assert doc["page_count"] == 2 and doc["ocr_confidence"] is not None
    rows = await chunk_rows(client, doc["id"])
    by_page = {page: content for content, _, _, page in rows}
    assert "Договор подряда" in by_page[1]
    assert "82 400" in by_page[2] and "приёмки" in by_page[2]
    hits = await search(client, h, "Сумма к оплате по акту")
    [hit] = [x for x in hits if "82 400" in x["content"]]
    assert hit["page"] == 2

    # A PDF with a text layer on every page needs no OCR, and says so.
    plain = scanned_pdf("Только текст.", Image.new("L", (10, 10), 255))
    r = await upload(client, h, "plain.pdf", plain)
    assert r.status_code == 201 and r.json()["ocr_confidence"] is None, r.text


@needs_ocr
@pytest.mark.parametrize(
    ("name", "fmt", "options"),
    [
        ("photo.jpg", "JPEG", {"quality": 90}),
        ("photo.jpeg", "JPEG", {"quality": 90}),
        ("scan.tif", "TIFF", {"compression": "tiff_lzw"}),
        ("IMG_0042.heic", "HEIF", {"quality": 90}),
    ],
)
async def test_each_image_format_is_read(client, auth, alice, name, fmt, options):
    h = auth(alice)
    r = await upload(client, auth(alice), name, encoded(text_image(RECEIPT), fmt, **options))
    assert r.status_code == 201 and r.json()["status"] == "ready", r.text
    [(content, *_)] = await chunk_rows(client, r.json()["id"])
    assert "Итого" in content and "4 250" in content
    assert (await client.delete(f"/api/v1/documents/{r.json()['id']}", headers=h)).status_code


@needs_ocr
async def test_a_photo_is_read_the_way_up_its_camera_recorded(client, auth, alice):
    # Phones store the pixels as the sensor saw them and the rotation in EXIF (6: turn 90°
    # clockwise to view); read sideways, the text would be noise.
    sideways = text_image(RECEIPT).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    r = await upload(client, auth(alice), "photo.jpg", encoded(sideways, "JPEG", exif=exif))
    assert r.status_code == 201, r.text
    [(content, *_)] = await chunk_rows(client, r.json()["id"])
    assert "Итого" in content and "4 250" in content


@needs_ocr
async def test_each_frame_of_a_multipage_tiff_is_a_page(client, auth, alice):
    first, second = text_image(RECEIPT), text_image(ACT)
    out = io.BytesIO()
    first.save(out, format="TIFF", save_all=True, append_images=[second])
    r = await upload(client, auth(alice), "scan.tiff", out.getvalue())
    doc = r.json()
    assert r.status_code == 201 and doc["page_count"] == 2, r.text
    by_page = {page: content for content, _, _, page in await chunk_rows(client, doc["id"])}
    assert "4 250" in by_page[1] and "82 400" in by_page[2]


@needs_ocr
async def test_scanned_pages_over_max_ocr_pages_are_refused(make_client, auth, alice):
    out = io.BytesIO()
    frames = [text_image([f"Страница {n}"], size=(600, 200)) for n in range(3)]
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:])
    async with make_client(ws=False, max_ocr_pages=2) as client:
        await refused(
            client,
            auth(alice),
            alice,
            "three.tiff",
            out.getvalue(),
            status=413,
            code="document_too_large",
            limit="MAX_OCR_PAGES",
        )


@needs_ocr
async def test_ocr_past_its_time_limit_is_stopped(make_client, auth, alice):
    async with make_client(ws=False, ocr_timeout_seconds=0.05) as client:
        await refused(
            client,
            auth(alice),
            alice,
            "receipt.png",
            encoded(text_image(RECEIPT), "PNG"),
            status=422,
            code="extraction_timeout",
            limit="OCR_TIMEOUT_SECONDS",
        )


async def test_without_the_ocr_engine_scans_are_refused_naming_what_to_install(
    make_client, auth, alice
):
    h = auth(alice)
    png = encoded(text_image(RECEIPT), "PNG")
    pdf = scanned_pdf("Страница с текстом.", a4_scan(ACT))
    async with make_client(ws=False, tesseract_cmd="/nonexistent/tesseract") as client:
        for name, data in (("receipt.png", png), ("act.pdf", pdf)):
            body = await refused(client, h, alice, name, data, status=503, code="ocr_unavailable")
            assert "tesseract-ocr-rus" in body["error"] and "TESSERACT_CMD" in body["error"]
            assert body["detail"]["setting"] == "TESSERACT_CMD"
        # A PDF that needs no OCR is still read.
        plain = scanned_pdf("Только текст.", Image.new("L", (9, 9)))
        r = await upload(client, h, "plain.pdf", plain)
        assert r.status_code == 201 and r.json()["status"] == "ready", r.text


@needs_ocr
async def test_without_a_language_s_data_scans_are_refused_naming_its_package(
    make_client, auth, alice
):
    # Standing in for a server with tesseract but without tesseract-ocr-rus: a language
    # this machine has no data for.
    async with make_client(ws=False, ocr_languages="rus+deu") as client:
        body = await refused(
            client,
            auth(alice),
            alice,
            "receipt.png",
            encoded(text_image(RECEIPT), "PNG"),
            status=503,
            code="ocr_unavailable",
        )
        assert "tesseract-ocr-deu" in body["error"] and "OCR_LANGUAGES" in body["error"]


async def test_images_over_max_image_pixels_are_refused_before_decoding(make_client, auth, alice):
    big = Image.new("L", (3000, 2000), 255)  # 6 megapixels, limit 5
    async with make_client(ws=False, max_image_pixels=5_000_000) as client:
        h = auth(alice)
        body = await refused(
            client,
            h,
            alice,
            "big.png",
            encoded(big, "PNG"),
            status=413,
            code="document_too_large",
            limit="MAX_IMAGE_PIXELS",
        )
        assert "3000×2000" in body["error"]
        await refused(
            client,
            h,
            alice,
            "big.pdf",
            scanned_pdf("Текст.", big),
            status=413,
            code="document_too_large",
            limit="MAX_IMAGE_PIXELS",
        )


@pytest.mark.parametrize(
    ("name", "data", "found"),
    [
        ("photo.jpg", encoded(Image.new("L", (64, 64)), "PNG"), "a PNG image"),
        ("scan.png", encoded(Image.new("L", (64, 64)), "JPEG"), "a JPEG image"),
        ("scan.tiff", b"%PDF-1.7\n", "a PDF document"),
        ("photo.heic", encoded(Image.new("L", (64, 64)), "TIFF"), "a TIFF image"),
        ("notes.png", "Просто текст, не картинка".encode(), None),
    ],
)
async def test_image_content_must_match_its_extension(client, auth, alice, name, data, found):
    h = auth(alice)
    body = await refused(client, h, alice, name, data, status=415, code="unsupported_file")
    assert (found or "not a") in body["error"]


async def test_a_damaged_image_is_unreadable(client, auth, alice):
    png = encoded(Image.new("L", (200, 200), 255), "PNG")
    await refused(
        client, auth(alice), alice, "cut.png", png[:60], status=422, code="unreadable_file"
    )


@needs_ocr
async def test_a_blank_scan_is_refused_as_empty_not_stored_empty(client, auth, alice):
    blank = encoded(Image.new("L", (800, 600), 255), "PNG")
    body = await refused(
        client, auth(alice), alice, "blank.png", blank, status=422, code="empty_document"
    )
    assert "recognised" in body["error"]
