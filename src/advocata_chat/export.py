"""Export a consultation as Markdown, DOCX (python-docx) or PDF (fpdf2, DejaVu Sans for
Cyrillic; the font ships inside the package)."""

from __future__ import annotations

import io
import re
from datetime import datetime
from pathlib import Path

from advocata_chat.schemas import ConversationOut, MessageOut

FONT = Path(__file__).parent / "fonts" / "DejaVuSans.ttf"
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


def _when(value: datetime) -> str:
    return value.strftime("%d.%m.%Y %H:%M UTC")


def _sources(m: MessageOut) -> list[str]:
    lines = []
    for c in m.citations:
        page = f", стр. {c['page']}" if c.get("page") else ""
        lines.append(f"[{c['n']}] {c.get('title') or 'документ'}{page}: «{c.get('quote', '')}»")
    return lines


def _status(m: MessageOut) -> str:
    return {"interrupted": " (ответ прерван)", "failed": " (ответ оборвался)"}.get(m.status, "")


def _header(conv: ConversationOut) -> list[str]:
    return [
        conv.title or "Консультация",
        f"Начата: {_when(conv.created_at)}; последнее сообщение: {_when(conv.last_message_at)}",
    ]


def markdown(conv: ConversationOut) -> bytes:
    title, dates = _header(conv)
    out = [f"# {title}", "", dates, ""]
    for m in conv.messages:
        out += [
            f"## {ROLES.get(m.role, m.role)} — {_when(m.created_at)}{_status(m)}",
            "",
            m.content,
            "",
        ]
        sources = _sources(m)
        if sources:
            out += ["**Источники:**", ""] + [f"- {s}" for s in sources] + [""]
    out += ["---", "", f"*{DISCLAIMER}*", ""]
    return "\n".join(out).encode("utf-8")


def docx(conv: ConversationOut) -> bytes:
    from docx import Document

    title, dates = _header(conv)
    doc = Document()
    doc.add_heading(title, level=1)
    doc.add_paragraph(dates)
    for m in conv.messages:
        doc.add_heading(f"{ROLES.get(m.role, m.role)} — {_when(m.created_at)}{_status(m)}", 2)
        for para in m.content.split("\n"):
            doc.add_paragraph(para)
        sources = _sources(m)
        if sources:
            doc.add_paragraph("Источники:")
            for s in sources:
                doc.add_paragraph(s, style="List Bullet")
    doc.add_paragraph(DISCLAIMER).italic = True
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def pdf(conv: ConversationOut) -> bytes:
    from fpdf import FPDF

    title, dates = _header(conv)
    doc = FPDF()
    doc.add_font("DejaVu", fname=str(FONT))
    doc.set_auto_page_break(auto=True, margin=15)
    doc.add_page()
    width = doc.w - doc.l_margin - doc.r_margin

    def para(text: str, size: int = 11, gap: float = 2) -> None:
        doc.set_font("DejaVu", size=size)
        doc.multi_cell(width, size * 0.5, text)
        doc.ln(gap)

    para(title, 16, 4)
    para(dates, 9, 6)
    for m in conv.messages:
        para(f"{ROLES.get(m.role, m.role)} — {_when(m.created_at)}{_status(m)}", 12, 1)
        para(m.content)
        sources = _sources(m)
        if sources:
            para("Источники:\n" + "\n".join(sources), 9, 4)
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


def render(conv: ConversationOut, fmt: str) -> tuple[bytes, str]:
    builders = {"md": markdown, "docx": docx, "pdf": pdf}
    return builders[fmt](conv if fmt == "md" else _printable_copy(conv)), MEDIA[fmt]
