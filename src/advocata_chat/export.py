"""Export a consultation as Markdown, DOCX (python-docx) or PDF (fpdf2, DejaVu Sans for
Cyrillic; the fonts ship inside the package).

Written for a client who hands the file to a lawyer: times in the client's zone
(`EXPORT_TIMEZONE`), sources in numeric order with every passage quoted from each, and in
the PDF bold headings and page numbers.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from advocata_chat.schemas import ConversationOut, MessageOut

FONTS = Path(__file__).parent / "fonts"
DISCLAIMER = (
    "Это консультация ИИ-помощника Advocata, а не юридическое заключение. Ответы основаны на "
    "документах, которые вы загрузили, и могут содержать ошибки. Для решений, имеющих "
    "юридические последствия, обратитесь к практикующему юристу."
)
ROLES = {"user": "Вы", "assistant": "Ассистент Advocata", "system": "Система"}
MEDIA = {
    "md": "text/markdown; charset=utf-8",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pdf": "application/pdf",
}


@dataclass
class Source:
    label: str  # "[2] Договор подряда, стр. 3"
    quotes: list[str]


def _when(value: datetime, tz: ZoneInfo) -> str:
    # "14.03.2026 17:05 MSK": the zone's abbreviation, or its offset ("+05") where it has none.
    return value.astimezone(tz).strftime("%d.%m.%Y %H:%M %Z")


def _sources(m: MessageOut) -> list[Source]:
    """The cited sources by number, each with every distinct passage the answer relied on."""
    out = []
    for c in sorted(m.citations, key=lambda c: int(c["n"])):
        page = f", стр. {c['page']}" if c.get("page") else ""
        # Answers stored before `quotes` existed carry only the first quote.
        quotes = [q["quote"] for q in c.get("quotes") or [c]]
        out.append(Source(f"[{c['n']}] {c.get('title') or 'документ'}{page}", quotes))
    return out


def _media(m: MessageOut) -> list[str]:
    """What a user message carried besides its text (issue 16): attached files, and that
    it was spoken (its text is then the transcript)."""
    lines = []
    if m.attachments:
        lines.append("Вложения: " + ", ".join(a.filename for a in m.attachments))
    if m.voice is not None:
        length = f", {m.voice.duration_seconds:.1f} с".replace(".", ",")
        lines.append(f"Голосовое сообщение{length if m.voice.duration_seconds else ''}")
    return [_printable(line) for line in lines]


def _status(m: MessageOut) -> str:
    return {"interrupted": " (ответ прерван)", "failed": " (ответ оборвался)"}.get(m.status, "")


def _heading(m: MessageOut, tz: ZoneInfo) -> str:
    return f"{ROLES.get(m.role, m.role)} — {_when(m.created_at, tz)}{_status(m)}"


def _header(conv: ConversationOut, tz: ZoneInfo) -> list[str]:
    return [
        conv.title or "Консультация",
        f"Начата: {_when(conv.created_at, tz)}; "
        f"последнее сообщение: {_when(conv.last_message_at, tz)} (часовой пояс {tz.key})",
    ]


def markdown(conv: ConversationOut, tz: ZoneInfo) -> bytes:
    title, dates = _header(conv, tz)
    out = [f"# {title}", "", dates, ""]
    for m in conv.messages:
        out += [f"## {_heading(m, tz)}", "", m.content, ""]
        out += [f"*{line}*\n" for line in _media(m)]
        sources = _sources(m)
        if sources:
            out += ["**Источники:**", ""]
            for s in sources:
                if len(s.quotes) == 1:
                    out.append(f"- {s.label}: «{s.quotes[0]}»")
                else:
                    out += [f"- {s.label}:"] + [f"  - «{q}»" for q in s.quotes]
            out.append("")
    out += ["---", "", f"*{DISCLAIMER}*", ""]
    return "\n".join(out).encode("utf-8")


def docx(conv: ConversationOut, tz: ZoneInfo) -> bytes:
    from docx import Document

    title, dates = _header(conv, tz)
    doc = Document()
    doc.add_heading(title, level=1)
    doc.add_paragraph(dates)
    for m in conv.messages:
        doc.add_heading(_heading(m, tz), 2)
        for para in m.content.split("\n"):
            doc.add_paragraph(para)
        for line in _media(m):
            doc.add_paragraph().add_run(line).italic = True
        sources = _sources(m)
        if sources:
            doc.add_paragraph().add_run("Источники:").bold = True
            for s in sources:
                if len(s.quotes) == 1:
                    doc.add_paragraph(f"{s.label}: «{s.quotes[0]}»", style="List Bullet")
                else:
                    doc.add_paragraph(f"{s.label}:", style="List Bullet")
                    for q in s.quotes:
                        doc.add_paragraph(f"«{q}»", style="List Bullet 2")
    doc.add_paragraph().add_run(DISCLAIMER).italic = True
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def pdf(conv: ConversationOut, tz: ZoneInfo) -> bytes:
    from fpdf import FPDF

    class Document(FPDF):
        def footer(self) -> None:
            # "{nb}" is replaced by the page count when the document is closed.
            self.set_y(-12)
            self.set_font("DejaVu", size=8)
            self.cell(0, 5, f"Стр. {self.page_no()} из {{nb}}", align="C")

    title, dates = _header(conv, tz)
    doc = Document()
    doc.add_font("DejaVu", fname=str(FONTS / "DejaVuSans.ttf"))
    doc.add_font("DejaVu", style="B", fname=str(FONTS / "DejaVuSans-Bold.ttf"))
    doc.set_auto_page_break(auto=True, margin=18)
    doc.add_page()
    width = doc.w - doc.l_margin - doc.r_margin

    def para(text: str, size: int = 11, gap: float = 2, style: str = "", indent: float = 0) -> None:
        doc.set_font("DejaVu", style=style, size=size)
        doc.set_x(doc.l_margin + indent)
        doc.multi_cell(width - indent, size * 0.5, text)
        doc.ln(gap)

    para(title, 16, 4, "B")
    para(dates, 9, 6)
    for m in conv.messages:
        para(_heading(m, tz), 12, 1, "B")
        para(m.content)
        for line in _media(m):
            para(line, 9, 1)
        sources = _sources(m)
        if sources:
            para("Источники:", 9, 1, "B")
            for s in sources:
                if len(s.quotes) == 1:
                    para(f"{s.label}: «{s.quotes[0]}»", 9, 1)
                else:
                    para(f"{s.label}:", 9, 1)
                    for q in s.quotes:
                        para(f"«{q}»", 9, 1, indent=6)
            doc.ln(3)
    para(DISCLAIMER, 9)
    return bytes(doc.output())


# Characters XML 1.0 forbids (lxml refuses them in DOCX) and that no font has a glyph for.
_UNPRINTABLE = re.compile("[\x00-\x08\x0e-\x1f\x7f\ufffe\uffff\ud800-\udfff]")


def _printable(text: str) -> str:
    # Vertical tab and form feed are line and page breaks pasted from Word.
    return _UNPRINTABLE.sub("", text.replace("\x0b", "\n").replace("\x0c", "\n"))


def _printable_copy(conv: ConversationOut) -> ConversationOut:
    """The conversation as DOCX and PDF can hold it: messages may contain any character
    a client sent, control characters included."""

    def cited(c: dict) -> dict:
        return {k: _printable(v) if isinstance(v, str) else v for k, v in c.items()}

    messages = [
        m.model_copy(
            update={"content": _printable(m.content), "citations": [cited(c) for c in m.citations]}
        )
        for m in conv.messages
    ]
    return conv.model_copy(
        update={"title": _printable(conv.title) if conv.title else conv.title, "messages": messages}
    )


def render(conv: ConversationOut, fmt: str, *, tz: ZoneInfo) -> tuple[bytes, str]:
    builders = {"md": markdown, "docx": docx, "pdf": pdf}
    return builders[fmt](conv if fmt == "md" else _printable_copy(conv), tz), MEDIA[fmt]
