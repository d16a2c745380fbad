"""OCR of scanned uploads: photos and scans (PNG, JPEG, TIFF, HEIC) and PDF pages without a
text layer, read by Tesseract (Debian's `tesseract-ocr` with `tesseract-ocr-rus`) through
pytesseract.

Runs in the extraction child (`sandbox.py`), so the time and memory limits apply to it and to
the `tesseract` processes it starts. Every image is bounded by `MAX_IMAGE_PIXELS` before it is
decoded, and a document by `MAX_OCR_PAGES`.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from advocata_chat.errors import AppError

if TYPE_CHECKING:
    from PIL.Image import Image

    from advocata_chat.extract import Limits

log = logging.getLogger(__name__)
INSTALL = "tesseract-ocr tesseract-ocr-rus tesseract-ocr-eng"
# A picture smaller than this (a logo, a stamp, a rule) holds no text worth reading.
MIN_SIDE = 32


class OcrUnavailable(AppError):
    """The file needs OCR (an image, or a PDF with scanned pages) and the OCR engine or its
    Russian language data is not installed on the server; nothing is stored."""

    status_code = 503
    code = "ocr_unavailable"
    example = (
        "The file is a scan and needs OCR, but the OCR engine is not installed on the server "
        f"(TESSERACT_CMD=tesseract not found); install the Debian packages {INSTALL}"
    )
    example_detail = {"setting": "TESSERACT_CMD", "install": INSTALL}


@dataclass
class Page:
    text: str
    words: int  # recognised words, the weight of this page's confidence
    confidence: float  # mean word confidence, 0..1


class Reader:
    """Recognises images with Tesseract; checks the engine once, before the first image.
    `on_start` runs then too (the sandbox grants OCR its own, longer time limit)."""

    def __init__(self, limits: Limits, on_start: Callable[[], None] | None = None) -> None:
        self.limits = limits
        self.on_start = on_start
        self.started = False
        self.pages: list[Page] = []

    def _start(self) -> None:
        import pytesseract

        pytesseract.pytesseract.tesseract_cmd = self.limits.tesseract_cmd
        # One thread per tesseract: concurrency comes from EXTRACT_CONCURRENCY, and OpenMP's
        # threads on a busy machine make it slower, not faster.
        os.environ["OMP_THREAD_LIMIT"] = "1"
        cmd = self.limits.tesseract_cmd
        try:
            installed = set(pytesseract.get_languages())
        except (pytesseract.TesseractNotFoundError, OSError):
            raise OcrUnavailable(
                "The file is a scan and needs OCR, but the OCR engine is not installed on the "
                f"server (TESSERACT_CMD={cmd} not found); install the Debian packages {INSTALL}",
                detail={"setting": "TESSERACT_CMD", "install": INSTALL},
            ) from None
        missing = [lang for lang in self.limits.ocr_languages.split("+") if lang not in installed]
        if missing:
            packages = " ".join(f"tesseract-ocr-{lang}" for lang in missing)
            raise OcrUnavailable(
                "The file is a scan and needs OCR, but the OCR engine has no data for "
                f"{', '.join(missing)} (OCR_LANGUAGES={self.limits.ocr_languages}); install "
                f"the Debian packages {packages}",
                detail={"setting": "OCR_LANGUAGES", "install": packages},
            )
        if self.on_start is not None:
            self.on_start()
        self.started = True

    def read(self, images: Iterable[Image]) -> str:
        """The text of one page, made of `images` (usually one full-page scan)."""
        from advocata_chat.extract import too_large

        if not self.started:
            self._start()
        if len(self.pages) >= self.limits.max_ocr_pages:
            raise too_large(
                f"more than {self.limits.max_ocr_pages} scanned pages",
                "MAX_OCR_PAGES",
                self.limits.max_ocr_pages,
            )
        parts, words, weighted = [], 0, 0.0
        for image in images:
            text, n, confidence = self._recognise(image)
            parts.append(text)
            words += n
            weighted += n * confidence
        page = Page("\n\n".join(p for p in parts if p), words, weighted / words if words else 0)
        self.pages.append(page)
        return page.text

    def _recognise(self, image: Image) -> tuple[str, int, float]:
        import pytesseract
        from PIL import ImageOps

        from advocata_chat.extract import UnreadableFile

        # Phones store a photo's rotation in EXIF; Tesseract reads the pixels as they are.
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        try:
            data = pytesseract.image_to_data(
                image, lang=self.limits.ocr_languages, output_type=pytesseract.Output.DICT
            )
        except pytesseract.TesseractError as e:
            raise UnreadableFile("The image could not be read by the OCR engine") from e
        # Words come with their block, paragraph and line; lines and paragraphs are rebuilt
        # from those (the splitter breaks chunks on paragraph breaks).
        lines: dict[tuple[int, int, int], list[str]] = {}
        confidences: list[float] = []
        for i, word in enumerate(data["text"]):
            word = word.strip()
            if not word:
                continue
            key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
            lines.setdefault(key, []).append(word)
            if float(data["conf"][i]) >= 0:
                confidences.append(float(data["conf"][i]) / 100)
        out: list[str] = []
        previous: tuple[int, int] | None = None
        for (block, par, _), line in lines.items():
            if previous is not None:
                out.append("\n\n" if (block, par) != previous else "\n")
            out.append(" ".join(line))
            previous = (block, par)
        mean = sum(confidences) / len(confidences) if confidences else 0.0
        return "".join(out), len(confidences), mean

    @property
    def confidence(self) -> float | None:
        """Mean word confidence over every page read (0..1), None if nothing was read."""
        words = sum(p.words for p in self.pages)
        if not self.pages:
            return None
        return round(sum(p.words * p.confidence for p in self.pages) / words, 4) if words else 0.0


def check_pixels(pixels: int, found: str, limits: Limits) -> None:
    from advocata_chat.extract import too_large

    if pixels > limits.max_image_pixels:
        raise too_large(found, "MAX_IMAGE_PIXELS", limits.max_image_pixels)


def open_frames(data: bytes, limits: Limits) -> Iterable[Image]:
    """The frames of an image file (a TIFF may hold a page per frame), each checked against
    MAX_IMAGE_PIXELS before its pixels are decoded."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    from advocata_chat.extract import UnreadableFile

    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:  # pragma: no cover - the wheel is a dependency; HEIC is then refused
        pass
    # Pillow's own guard (an error at twice this) for whatever is decoded without a check.
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    try:
        image = Image.open(io.BytesIO(data))
        for frame in ImageSequence.Iterator(image):
            width, height = frame.size
            check_pixels(width * height, f"an image of {width}×{height} pixels", limits)
            frame.load()
            yield frame.copy()
    except Image.DecompressionBombError:
        raise too_large_image(limits) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise UnreadableFile("The image could not be read: the file is damaged") from e


def too_large_image(limits: Limits) -> AppError:
    from advocata_chat.extract import too_large

    return too_large("an image over the pixel limit", "MAX_IMAGE_PIXELS", limits.max_image_pixels)


def pdf_page_images(page, limits: Limits) -> list[Image]:
    """The pictures on a PDF page, in the page's order; a scanned page is usually one
    full-page image. Sizes are read from the image dictionaries before anything is decoded."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    total = 0
    found: list[Image] = []
    for key in page.images.keys():  # noqa: SIM118 - iterating decodes every image
        xobject = _xobject(page, key)
        if xobject is not None:
            width, height = int(xobject.get("/Width", 0)), int(xobject.get("/Height", 0))
            if min(width, height) < MIN_SIDE:
                continue
            total += width * height
            check_pixels(total, f"{total:,} pixels of images on one page", limits)
        try:
            image = page.images[key].image
        except Image.DecompressionBombError:
            raise too_large_image(limits) from None
        except MemoryError:
            raise
        except Exception:  # an encoding pypdf cannot decode (JBIG2…): this picture is skipped
            log.info("a PDF image could not be decoded", exc_info=True)
            continue
        if image is None or min(image.size) < MIN_SIDE:
            continue
        if xobject is None:  # inline or inside a form: checked once decoded
            total += image.width * image.height
            check_pixels(total, f"{total:,} pixels of images on one page", limits)
        found.append(image)
    return found


def _xobject(page, key):
    """The image dictionary a page's image key names, if it is a plain page resource."""
    if not isinstance(key, str) or key.startswith("~"):
        return None
    try:
        return page["/Resources"]["/XObject"][key].get_object()
    except (KeyError, TypeError):
        return None
