"""Text extraction from uploaded files: PDF (pypdf), DOCX (python-docx), HTML, TXT, MD.

Every page's character range in the extracted text is kept, so a chunk knows its page.
Extraction is CPU-bound; callers run it in a thread.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from advocata_chat.errors import AppError, InvalidInput

SUPPORTED = {".pdf", ".docx", ".txt", ".md", ".html", ".htm"}


class UnsupportedFile(AppError):
    """The file is not .pdf, .docx, .txt, .md or .html."""

    status_code = 415
    code = "unsupported_file"
    example = "Unsupported file type '.xlsx'. Supported: .docx, .htm, .html, .md, .pdf, .txt"


class UnreadableFile(InvalidInput):
    """The file is corrupt, encrypted or not text; nothing is stored."""

    code = "unreadable_file"
    example = "The PDF is encrypted; upload a copy without a password"


class EmptyDocument(InvalidInput):
    """The file has no text (empty, or scanned images only); nothing is stored."""

    code = "empty_document"
    example = "The file is empty"


@dataclass
class Extracted:
    text: str
    # (start, end) character range of each page in `text`; empty for formats without pages.
    pages: list[tuple[int, int]] = field(default_factory=list)


def _tidy(text: str) -> str:
    # Normalise line ends and drop trailing spaces and runs of blank lines, keeping
    # paragraph breaks, which the splitter uses as boundaries.
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t\u00a0]+\n", "\n", text)
    # Justified PDF text comes out with runs of spaces ("164  800"); one is enough.
    text = re.sub(r"(?<=\S)[ \t\u00a0]{2,}(?=\S)", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnreadableFile("The file is not valid UTF-8 or Windows-1251 text")


def _pdf(data: bytes) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableFile("The PDF is encrypted; upload a copy without a password")
        parts: list[str] = []
        pages: list[tuple[int, int]] = []
        offset = 0
        for page in reader.pages:
            chunk = _tidy(page.extract_text() or "")
            if parts:
                offset += 2  # the "\n\n" joining pages
            pages.append((offset, offset + len(chunk)))
            parts.append(chunk)
            offset += len(chunk)
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise UnreadableFile(f"The PDF could not be read: {e}") from e
    return Extracted("\n\n".join(parts), pages)


def _docx(data: bytes) -> Extracted:
    import zipfile

    from docx import Document

    try:
        doc = Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise UnreadableFile(f"The DOCX could not be read: {e}") from e
    blocks = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
    return Extracted(_tidy("\n".join(blocks)))


def _html(data: bytes) -> Extracted:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode(data), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    return Extracted(_tidy(soup.get_text("\n")))


def extract(filename: str, data: bytes) -> Extracted:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in SUPPORTED:
        raise UnsupportedFile(
            f"Unsupported file type '{suffix or filename}'. Supported: "
            + ", ".join(sorted(SUPPORTED))
        )
    if not data:
        raise EmptyDocument("The file is empty")
    if suffix == ".pdf":
        result = _pdf(data)
    elif suffix == ".docx":
        result = _docx(data)
    elif suffix in (".html", ".htm"):
        result = _html(data)
    else:
        result = Extracted(_tidy(_decode(data)))
    if not result.text.strip():
        raise EmptyDocument(
            "No text could be extracted from the file (a scanned PDF needs OCR first)"
        )
    return result
