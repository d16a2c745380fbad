"""Files that are small on disk and expensive to open, built on the spot (the tests and
`bench.uploads` share them): zip bombs in DOCX clothing, PDFs that expand, and a recording
whose length takes long to count."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

SENTENCE = (
    "Арендатор обязуется своевременно вносить арендную плату в размере, установленном "
    "договором, и поддерживать помещение в надлежащем состоянии. "
)
PACKAGE_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/package"


def docx(paragraphs: list[str]) -> bytes:
    from docx import Document

    doc = Document()
    for p in paragraphs:
        doc.add_paragraph(p)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def docx_with_zero_part(megabytes: int, *, level: int = 6) -> bytes:
    """A valid DOCX whose document refers to an embedded package of `megabytes` MB of zeros
    (python-docx loads every referenced part into memory). A lower `level` is faster and
    inflates less (about 230 times at level 1, 1000 at 6)."""
    source = zipfile.ZipFile(io.BytesIO(docx(["Договор аренды"])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "[Content_Types].xml":
                kind = '<Default Extension="bin" ContentType="application/octet-stream"/>'
                data = data.replace(b"</Types>", kind.encode() + b"</Types>")
            if info.filename == "word/_rels/document.xml.rels":
                rel = (
                    f'<Relationship Id="rId99" Type="{PACKAGE_REL}" Target="embeddings/zeros.bin"/>'
                )
                data = data.replace(b"</Relationships>", rel.encode() + b"</Relationships>")
            z.writestr(info.filename, data)
        with z.open("word/embeddings/zeros.bin", "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(megabytes):
                f.write(block)
    return out.getvalue()


def docx_with_big_body(body_bytes: int = 1_000_000, *, varied: bool = False) -> bytes:
    """A DOCX whose word/document.xml is about `body_bytes` long: one paragraph repeated
    (compresses hundreds of times), or numbered ones that compress like real text."""
    per = len(f"<w:p><w:r><w:t>{SENTENCE}</w:t></w:r></w:p>".encode())
    count = body_bytes // per
    if varied:
        return docx([f"{n}. {SENTENCE}{n * 7919 % 100003}" for n in range(count)])
    return docx([SENTENCE] * count)


def pdf(pages: int, content: bytes, *, shared: bool = True, declared: int | None = None) -> bytes:
    """A PDF of `pages` pages with Helvetica text. With `shared`, every page draws the same
    Flate-compressed content stream; otherwise each page has its own copy. `declared` is the
    page count the page tree claims (the true one unless given)."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    packed = zlib.compress(content, 9)
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (
        len(packed),
        packed,
    )
    kids = []
    if shared:
        objects.append(stream)  # object 4
    for _ in range(pages):
        page = len(objects) + 1
        contents = 4 if shared else page + 1
        kids.append(b"%d 0 R" % page)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % contents
        )
        if not shared:
            objects.append(stream)
    count = pages if declared is None else declared
    objects[1] = b"<< /Type /Pages /Count %d /Kids [%s] >>" % (count, b" ".join(kids))
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def text_ops(
    total_bytes: int, line: bytes = b"(Lorem ipsum dolor sit amet) Tj 0 -14 Td\n"
) -> bytes:
    """Page content of about `total_bytes`: many short text-showing operators."""
    return b"BT /F1 12 Tf 72 720 Td\n" + line * (total_bytes // len(line)) + b"ET\n"


def pdf_many_pages(pages: int = 20_000) -> bytes:
    return pdf(pages, text_ops(200), shared=False)


def pdf_shared_stream(pages: int = 100, stream_bytes: int = 4_000_000) -> bytes:
    return pdf(pages, text_ops(stream_bytes))


def pdf_one_huge_stream(stream_bytes: int = 80_000_000) -> bytes:
    """One page whose content stream inflates past pypdf's own 75 MB limit."""
    return pdf(1, b"BT /F1 12 Tf 72 720 Td (x) Tj ET\n" + b" " * stream_bytes)


# -- a recording that is small and slow to read ---------------------------------------------


def _ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, no final xor)."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        crc &= 0xFFFFFFFF
    return crc


def _ogg_page(packets: list[bytes], *, seq: int, granule: int, flags: int = 0) -> bytes:
    lacing = b"".join(b"\xff" * (len(p) // 255) + bytes([len(p) % 255]) for p in packets)
    head = b"OggS" + bytes([0, flags]) + struct.pack("<qII", granule, 1, seq)
    body = bytes([len(lacing)]) + lacing + b"".join(packets)
    crc = _ogg_crc(head + b"\0\0\0\0" + body)
    return head + struct.pack("<I", crc) + body


def ogg_stalled_clock(pages: int) -> bytes:
    """Ogg Opus whose every page repeats one granule position: 255 one-byte packets a page
    (537 bytes), and a clock that never moves, so counting its length up to a limit never
    ends early. 4000 pages (2 MB) took ~9 s to count with PyAV before anything bounded it."""
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, 48000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 1) + b"x" + struct.pack("<I", 0)
    start = _ogg_page([head], seq=0, granule=0, flags=2) + _ogg_page([tags], seq=1, granule=0)
    return start + _ogg_page([b"\x00"] * 255, seq=2, granule=480) * pages
