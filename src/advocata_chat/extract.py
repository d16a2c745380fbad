"""Text extraction from uploaded files: PDF (pypdf), DOCX (python-docx), HTML, TXT, MD, and
OCR of images and of PDF pages without a text layer (`ocr.py`).

Every page's character range in the extracted text is kept, so a chunk knows its page.
The content must match the extension (a PDF or a program named `.txt` is refused), and what
a file expands to is bounded by `Limits`: a few kilobytes can inflate to gigabytes (a zip
bomb) or to hours of parsing (PDF pages sharing one huge stream). Extraction is CPU-bound and
untrusted: callers run it in a child process (`sandbox.py`) with a time and memory limit.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath

from advocata_chat.errors import AppError, InvalidInput, PayloadTooLarge
from advocata_chat.ocr import Reader, open_frames, pdf_page_images

# Images, by extension, and the content each must have (as `_kind` names it).
IMAGES = {
    ".png": "a PNG image",
    ".jpg": "a JPEG image",
    ".jpeg": "a JPEG image",
    ".tif": "a TIFF image",
    ".tiff": "a TIFF image",
    ".heic": "a HEIC image",
}
SUPPORTED = {".pdf", ".docx", ".txt", ".md", ".html", ".htm", *IMAGES}
# Smaller DOCX parts may inflate any amount: they cannot amount to much.
RATIO_FLOOR_BYTES = 100_000


class UnsupportedFile(AppError):
    """The file is not .pdf, .docx, .txt, .md, .html or an image (.png, .jpg, .tiff, .heic)."""

    status_code = 415
    code = "unsupported_file"
    example = "Unsupported file type '.xlsx'. Supported: .docx, .heic, .htm, .html, .jpeg, …"


class UnreadableFile(InvalidInput):
    """The file is corrupt, encrypted or not text; nothing is stored."""

    code = "unreadable_file"
    example = "The PDF is encrypted; upload a copy without a password"


class EmptyDocument(InvalidInput):
    """The file has no text (empty, or scanned images only); nothing is stored."""

    code = "empty_document"
    example = "The file is empty"


class DocumentTooLarge(PayloadTooLarge):
    """Small on disk, too big once opened. `detail` names the setting that refused it."""

    code = "document_too_large"


@dataclass(frozen=True)
class Limits:
    max_chars: int = 1_000_000
    max_pdf_pages: int = 2000
    max_pdf_stream_bytes: int = 30_000_000
    max_docx_uncompressed_bytes: int = 100_000_000
    max_zip_ratio: float = 100.0
    tesseract_cmd: str = "tesseract"
    ocr_languages: str = "rus+eng"
    max_ocr_pages: int = 20
    max_image_pixels: int = 40_000_000

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(
            max_chars=settings.max_document_chars,
            max_pdf_pages=settings.max_pdf_pages,
            max_pdf_stream_bytes=settings.max_pdf_stream_bytes,
            max_docx_uncompressed_bytes=settings.max_docx_uncompressed_bytes,
            max_zip_ratio=settings.max_zip_ratio,
            tesseract_cmd=settings.tesseract_cmd,
            ocr_languages=settings.ocr_languages,
            max_ocr_pages=settings.max_ocr_pages,
            max_image_pixels=settings.max_image_pixels,
        )


def too_large(found: str, setting: str, limit: float) -> DocumentTooLarge:
    """`found` says what was found ("20,000 pages"); `setting` is the variable that allows it."""
    limit = int(limit) if float(limit).is_integer() else limit
    return DocumentTooLarge(
        f"The document is too large to process: {found}; the limit is {setting}={limit}",
        detail={"limit": setting, "max": limit},
    )


@dataclass
class Extracted:
    text: str
    # (start, end) character range of each page in `text`; empty for formats without pages.
    pages: list[tuple[int, int]] = field(default_factory=list)
    # Mean word confidence (0..1) of the OCR-ed pages; None when nothing needed OCR.
    ocr_confidence: float | None = None


# Leading bytes of formats people upload by mistake, named in the refusal.
MAGIC = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (DOCX, XLSX, ODT…)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office file (.doc, .xls)"),
    (b"{\\rtf", "an RTF document"),
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a program"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
)
# Bytes that never occur in text (libmagic's rule): tab, line ends, form feed, ESC are fine.
_BINARY = re.compile(r"[\x00-\x06\x0e-\x1a\x1c-\x1f\x7f]")


# HEIF's ISO box: a size, then "ftyp" and a brand saying what the file holds.
HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


def _kind(data: bytes) -> str | None:
    if b"%PDF-" in data[:1024]:  # readers accept the header anywhere in the first 1 KB
        return "a PDF document"
    if data[4:8] == b"ftyp" and data[8:12] in HEIC_BRANDS:
        return "a HEIC image"
    return next((name for magic, name in MAGIC if data.startswith(magic)), None)


def _not_a(expected: str, data: bytes) -> UnsupportedFile:
    kind = _kind(data)
    return UnsupportedFile(
        f"The file's content is not {expected}"
        + (f": it is {kind}" if kind else "")
        + "; upload it with the extension that matches its content"
    )


def _tidy(text: str) -> str:
    # Normalise line ends and drop trailing spaces and runs of blank lines, keeping
    # paragraph breaks, which the splitter uses as boundaries.
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    # Broken PDF font maps yield lone surrogates, which no UTF-8 database column accepts.
    text = re.sub("[\ud800-\udfff]", "\ufffd", text)
    text = re.sub(r"[ \t\u00a0]+\n", "\n", text)
    # Justified PDF text comes out with runs of spaces ("164  800"); one is enough.
    text = re.sub(r"(?<=\S)[ \t\u00a0]{2,}(?=\S)", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _text(data: bytes, limits: Limits) -> str:
    """Bytes that are text: UTF-16 with a byte-order mark, UTF-8 or Windows-1251, with no
    binary bytes (cp1251 decodes almost anything, so decoding alone proves nothing)."""
    if _kind(data) is not None:
        raise _not_a("text", data)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings: tuple[str, ...] = ("utf-16",)
    else:
        encodings = ("utf-8-sig", "cp1251")
    for encoding in encodings:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise UnsupportedFile("The file is not text (UTF-8, UTF-16 or Windows-1251)")
    if (m := _BINARY.search(text)) is not None:
        raise UnsupportedFile(
            f"The file is not text: it holds binary data (byte {ord(m.group()):#04x} at "
            f"character {m.start():,})"
        )
    if len(text) > limits.max_chars:
        raise too_large(f"{len(text):,} characters of text", "MAX_DOCUMENT_CHARS", limits.max_chars)
    return text


# pypdf's own decompression limits (75 MB by default), set to ours.
_PYPDF_OUTPUT_LIMITS = (
    "zlib_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "array_based_stream_maximum_output_length",
    "brotli_maximum_output_length",
)


class _Paged:
    """Pages joined by a blank line, each page's character range kept, and the document's
    character limit checked as pages arrive (so a huge file stops early)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.parts: list[str] = []
        self.pages: list[tuple[int, int]] = []
        self.offset = 0

    def add(self, text: str) -> None:
        if self.parts:
            self.offset += 2  # the "\n\n" joining pages
        self.pages.append((self.offset, self.offset + len(text)))
        self.parts.append(text)
        self.offset += len(text)
        if self.offset > self.limits.max_chars:
            raise too_large(
                f"more than {self.limits.max_chars:,} characters of text",
                "MAX_DOCUMENT_CHARS",
                self.limits.max_chars,
            )

    def extracted(self, confidence: float | None) -> Extracted:
        return Extracted("\n\n".join(self.parts), self.pages, confidence)


def _pdf(data: bytes, limits: Limits, reader_: Reader) -> Extracted:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError, PyPdfError

    if _kind(data) != "a PDF document":
        raise _not_a("a PDF", data)
    stream_limit = limits.max_pdf_stream_bytes
    try:
        with apply_configuration(**dict.fromkeys(_PYPDF_OUTPUT_LIMITS, stream_limit)):
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                raise UnreadableFile("The PDF is encrypted; upload a copy without a password")
            # The declared count first: listing 20,000 pages takes seconds by itself. Then
            # the real one, since the page tree may hold more than it declares.
            count = reader.trailer["/Root"]["/Pages"]["/Count"]
            if not isinstance(count, int) or count <= limits.max_pdf_pages:
                count = len(reader.pages)
            if count > limits.max_pdf_pages:
                raise too_large(f"{count:,} pages", "MAX_PDF_PAGES", limits.max_pdf_pages)
            # Text extraction parses every page's content; pages may all point at one huge
            # stream (decoded once, parsed per page), so the total is what costs.
            content = 0
            for page in reader.pages:
                stream = page.get_contents()
                content += len(stream.get_data()) if stream is not None else 0
                if content > stream_limit:
                    raise too_large(
                        f"more than {stream_limit:,} bytes of decompressed page content",
                        "MAX_PDF_STREAM_BYTES",
                        stream_limit,
                    )
            paged = _Paged(limits)
            for page in reader.pages:
                chunk = _tidy(page.extract_text() or "")
                if not chunk and (images := pdf_page_images(page, limits)):
                    # A scanned page: its text is what OCR reads in its pictures.
                    chunk = _tidy(reader_.read(images))
                paged.add(chunk)
    except LimitReachedError as e:
        # pypdf's guards: a stream inflating past MAX_PDF_STREAM_BYTES, or a structure
        # (arrays, page tree, nesting) past pypdf's own bounds.
        if "decompress" in str(e).lower():
            raise too_large(
                f"a stream inflates past {stream_limit:,} bytes",
                "MAX_PDF_STREAM_BYTES",
                stream_limit,
            ) from None
        raise DocumentTooLarge("The PDF's structure is too large or too deep to process") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise UnreadableFile("The PDF could not be read: the file is damaged") from e
    return paged.extracted(reader_.confidence)


def _image(suffix: str, data: bytes, limits: Limits, reader: Reader) -> Extracted:
    """A photo or scan: every frame (a TIFF may hold several) is a page, read by OCR."""
    if _kind(data) != IMAGES[suffix]:
        raise _not_a(IMAGES[suffix], data)
    paged = _Paged(limits)
    for frame in open_frames(data, limits):
        paged.add(_tidy(reader.read([frame])))
    return paged.extracted(reader.confidence)


def _docx(data: bytes, limits: Limits) -> Extracted:
    import zipfile

    from docx import Document

    if not data.startswith(b"PK\x03\x04"):
        raise _not_a("a DOCX document", data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise UnreadableFile("The DOCX could not be read: the file is damaged") from e
    if "word/document.xml" not in {p.filename for p in parts}:
        raise UnsupportedFile(
            "The file's content is not a DOCX document: it is a ZIP archive without "
            "word/document.xml"
        )
    # python-docx loads every part into memory. zipfile never inflates a part past the size
    # its directory declares, so the declared sizes are a safe bound to check first.
    total = sum(p.file_size for p in parts)
    if total > limits.max_docx_uncompressed_bytes:
        raise too_large(
            f"{total:,} bytes once uncompressed",
            "MAX_DOCX_UNCOMPRESSED_BYTES",
            limits.max_docx_uncompressed_bytes,
        )
    for p in parts:
        if p.file_size > RATIO_FLOOR_BYTES and p.file_size > limits.max_zip_ratio * max(
            p.compress_size, 1
        ):
            ratio = p.file_size // max(p.compress_size, 1)
            raise too_large(
                f"its part {p.filename[:80]} inflates {ratio:,} times",
                "MAX_ZIP_RATIO",
                limits.max_zip_ratio,
            )
    try:
        doc = Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, SyntaxError) as e:
        raise UnreadableFile("The DOCX could not be read: the file is damaged") from e
    blocks = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
    text = _tidy("\n".join(blocks))
    if len(text) > limits.max_chars:
        raise too_large(f"{len(text):,} characters of text", "MAX_DOCUMENT_CHARS", limits.max_chars)
    return Extracted(text)


def _html(data: bytes, limits: Limits) -> Extracted:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_text(data, limits), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    return Extracted(_tidy(soup.get_text("\n")))


def suffix_of(filename: str) -> str:
    return PurePath(filename).suffix.lower()


def refuse_early(filename: str, data: bytes) -> None:
    """The refusals that need no parsing (an unsupported extension, an empty file), which
    the upload request makes itself; the rest are the job's (ingest.py)."""
    suffix = suffix_of(filename)
    if suffix not in SUPPORTED:
        shown = suffix[:20] or PurePath(filename).name[:40]
        raise UnsupportedFile(
            f"Unsupported file type '{shown}'. Supported: " + ", ".join(sorted(SUPPORTED))
        )
    if not data:
        raise EmptyDocument("The file is empty")


def extract(
    filename: str,
    data: bytes,
    limits: Limits | None = None,
    *,
    on_ocr: Callable[[], None] | None = None,
) -> Extracted:
    """The file's text; `on_ocr` is called once if OCR starts (it is much slower)."""
    limits = limits or Limits()
    refuse_early(filename, data)
    suffix = suffix_of(filename)
    if suffix == ".pdf":
        result = _pdf(data, limits, Reader(limits, on_ocr))
    elif suffix in IMAGES:
        result = _image(suffix, data, limits, Reader(limits, on_ocr))
    elif suffix == ".docx":
        result = _docx(data, limits)
    elif suffix in (".html", ".htm"):
        result = _html(data, limits)
    else:
        result = Extracted(_tidy(_text(data, limits)))
    if not result.text.strip():
        if result.ocr_confidence is not None:
            raise EmptyDocument("No text was recognised in the scanned file")
        raise EmptyDocument("No text could be extracted from the file")
    return result
