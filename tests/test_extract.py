"""Extraction's own rules, in-process (the API tests run them through the child process)."""

from __future__ import annotations

import codecs
import io
import zipfile

import pytest

from advocata_chat.extract import (
    RATIO_FLOOR_BYTES,
    DocumentTooLarge,
    Limits,
    UnsupportedFile,
    extract,
)
from tests import bombs


def test_a_pdf_that_understates_its_page_count_is_still_counted():
    lying = bombs.pdf(30, bombs.text_ops(100), declared=1)
    with pytest.raises(DocumentTooLarge) as refused:
        extract("a.pdf", lying, Limits(max_pdf_pages=20))
    assert refused.value.detail == {"limit": "MAX_PDF_PAGES", "max": 20}
    assert len(extract("a.pdf", lying, Limits(max_pdf_pages=30)).pages) == 30


def with_zeros(size: int) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(bombs.docx(["Договор"])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in source.infolist():
            z.writestr(info.filename, source.read(info))
        z.writestr("word/media/blank.bin", bytes(size))  # inflates about 1000 times
    return out.getvalue()


def test_only_parts_over_the_floor_count_for_the_ratio():
    limits = Limits(max_zip_ratio=50)
    assert extract("a.docx", with_zeros(RATIO_FLOOR_BYTES), limits).text == "Договор"
    with pytest.raises(DocumentTooLarge, match="blank.bin inflates"):
        extract("a.docx", with_zeros(RATIO_FLOOR_BYTES + 1), limits)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (codecs.BOM_UTF16_BE + "Договор".encode("utf-16-be"), "Договор"),
        ("Договор".encode("cp1251"), "Договор"),
        (codecs.BOM_UTF8 + "Договор\tаренды\x0c\x1b".encode(), "Договор\tаренды\x0c\x1b"),
    ],
)
def test_text_in_the_encodings_people_save(data, text):
    assert extract("a.txt", data).text == text


@pytest.mark.parametrize("byte", [0x00, 0x01, 0x06, 0x0E, 0x1A, 0x1F, 0x7F])
def test_a_binary_byte_means_it_is_not_text(byte):
    with pytest.raises(UnsupportedFile, match=f"{byte:#04x}"):
        extract("a.txt", b"Dogovor " + bytes([byte]) + b" arendy")
