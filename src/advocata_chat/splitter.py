"""Splitting legal text into overlapping chunks at the boundaries legal documents have.

Sizes are in characters. Chunks are returned as exact (start, end) spans of the source
text, so every chunk maps back to the passage it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A new block starts at a blank line, a heading, an article ("Статья 5", "Глава 2",
# "Раздел III"), a numbered clause ("1.", "2.3.", "4.1.2)") or a list bullet.
_BLOCK_START = re.compile(
    r"\n(?=\s*(?:\n|#{1,6}\s|(?:Статья|Глава|Раздел|Приложение|Article)\s|"
    r"\d{1,3}(?:\.\d{1,3})*[.)]\s|[-•*–]\s|[IVXLC]+\.\s|[А-ЯЁA-Z][А-ЯЁA-Z ,«»\"-]{6,}\n))"
)
_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+(?=[«\"(]?[А-ЯЁA-Z0-9])")


@dataclass(frozen=True)
class Span:
    start: int
    end: int


def _cuts(text: str, start: int, end: int, pattern: re.Pattern) -> list[int]:
    return [m.end() for m in pattern.finditer(text, start, end) if start < m.end() < end]


def _pieces(text: str, start: int, end: int, size: int) -> list[Span]:
    """Break [start, end) into pieces no longer than `size`, at the best boundaries."""
    if end - start <= size:
        return [Span(start, end)]
    for pattern in (_BLOCK_START, _SENTENCE_END, re.compile(r"\s+")):
        cuts = _cuts(text, start, end, pattern)
        if cuts:
            out: list[Span] = []
            bounds = [start, *cuts, end]
            for a, b in zip(bounds, bounds[1:], strict=False):
                out += _pieces(text, a, b, size)
            return out
    # No boundary at all (one enormous token): cut hard.
    return [Span(i, min(i + size, end)) for i in range(start, end, size)]


def _sentences(text: str, piece: Span, overlap: int) -> list[Span]:
    if piece.end - piece.start <= overlap:
        return [piece]
    bounds = [piece.start, *_cuts(text, piece.start, piece.end, _SENTENCE_END), piece.end]
    # Whitespace between sentences belongs to no piece (chunks are trimmed anyway).
    return [Span(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if text[a:b].strip()]


def _glue_headings(text: str, pieces: list[Span], size: int) -> list[Span]:
    """Attach short title lines ("3. ЦЕНА И ПОРЯДОК ОПЛАТЫ") to the text they head."""
    out: list[Span] = []
    pending: Span | None = None
    for piece in pieces:
        if pending is not None:
            if piece.end - pending.start <= size:
                piece = Span(pending.start, piece.end)
            else:
                out.append(pending)
            pending = None
        body = text[piece.start : piece.end].strip()
        if len(body) <= 80 and "\n" not in body and not body.endswith((".", ";", ":")):
            pending = piece
        else:
            out.append(piece)
    if pending is not None:
        out.append(pending)
    return out


def split(text: str, *, chunk_size: int, overlap: int) -> list[Span]:
    """Pack boundary-aligned pieces into chunks of at most `chunk_size` characters.

    Each chunk after the first starts with up to `overlap` characters of whole pieces
    from the end of the previous one, so a clause cut at a chunk edge is still whole in
    one of the two chunks.
    """
    if not text.strip():
        return []
    pieces = _glue_headings(text, _pieces(text, 0, len(text), chunk_size), chunk_size)
    # Blocks longer than the overlap are packed sentence by sentence: otherwise no whole
    # piece fits the overlap, chunks do not overlap at all, and a clause cut at a chunk
    # edge is whole in neither chunk (measured: docs/quality.md).
    pieces = [p for piece in pieces for p in _sentences(text, piece, overlap)]
    pieces = [p for p in pieces if text[p.start : p.end].strip()]
    chunks: list[Span] = []
    current: list[Span] = []
    for piece in pieces:
        if current and piece.end - current[0].start > chunk_size:
            chunks.append(Span(current[0].start, current[-1].end))
            # Carry whole trailing pieces into the next chunk, within the overlap budget.
            carried: list[Span] = []
            for prev in reversed(current):
                if current[-1].end - prev.start > overlap or (piece.end - prev.start > chunk_size):
                    break
                carried.insert(0, prev)
            current = carried
        current.append(piece)
    if current:
        chunks.append(Span(current[0].start, current[-1].end))
    # Trim surrounding whitespace; spans stay exact offsets into `text`.
    trimmed = []
    for c in chunks:
        s, e = c.start, c.end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        # A chunk of nothing but carried overlap adds nothing: the previous one holds it.
        if e > s and not (trimmed and s >= trimmed[-1].start and e <= trimmed[-1].end):
            trimmed.append(Span(s, e))
    return trimmed
