"""Exports as a client hands them to a lawyer, read back the way a reader sees them: local
times, sources in numeric order with every quoted passage, bold headings and page numbers."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from docx import Document
from pypdf import PdfReader

from advocata_chat import export
from advocata_chat.schemas import ConversationOut, MessageOut
from tests.test_documents import CONTRACT, upload

CONV = "/api/v1/chat/conversations"
MOSCOW = ZoneInfo("Europe/Moscow")
ASKED = datetime(2026, 3, 14, 14, 5, tzinfo=UTC)  # 17:05 in Moscow
ANSWERED = datetime(2026, 3, 14, 14, 6, tzinfo=UTC)
PRICE = "Цена работ составляет 164 800 рублей."
DEADLINE = "Срок выполнения работ — до 1 марта 2026 года."
WARRANTY = "Гарантия на работы — 24 месяца."
# Long enough to run over several PDF pages.
ANSWER = "Цена — 164 800 рублей [2]. Гарантия — 24 месяца [1]. Срок — 1 марта [2].\n" + (
    "Подробный разбор условий договора подряда и порядка приёмки работ. " * 60
)


def conversation() -> ConversationOut:
    cid = uuid.uuid4()

    def message(role, content, created_at, citations=()):
        return MessageOut(
            id=uuid.uuid4(),
            conversation_id=cid,
            role=role,
            content=content,
            token_count=None,
            citations=list(citations),
            status="complete",
            created_at=created_at,
        )

    def cite(n, title, page, *quotes):
        quoted = [{"quote": q, "quote_start": 0, "quote_end": len(q)} for q in quotes]
        return {"n": n, "title": title, "page": page, **quoted[0], "quotes": quoted}

    # Citations are stored in order of first mention: [2] before [1].
    citations = [
        cite(2, "Договор подряда", 3, PRICE, DEADLINE),
        cite(1, "Гарантийный талон", None, WARRANTY),
    ]
    return ConversationOut(
        id=cid,
        user_id=uuid.uuid4(),
        title="Ремонт санузла",
        status="active",
        total_tokens=0,
        messages_count=2,
        created_at=ASKED,
        updated_at=ANSWERED,
        last_message_at=ANSWERED,
        messages=[
            message("user", "Сколько стоят работы и когда их сдают?", ASKED),
            message("assistant", ANSWER, ANSWERED, citations),
        ],
    )


def assert_sources_in_order(text: str) -> None:
    flat = " ".join(text.split())
    at = [flat.index(s) for s in ("[1] Гарантийный талон", "[2] Договор подряда, стр. 3")]
    assert at == sorted(at), "sources are not in numeric order"
    # Both passages of the source cited twice, after its entry.
    assert at[1] < flat.index(PRICE) < flat.rindex(DEADLINE)
    assert flat.index(WARRANTY, at[0]) < at[1]


def test_markdown_has_local_times_and_every_quote_in_numeric_order():
    text = export.markdown(conversation(), MOSCOW).decode()
    assert "## Вы — 14.03.2026 17:05 MSK" in text
    assert "## Ассистент Advocata — 14.03.2026 17:06 MSK" in text
    assert "часовой пояс Europe/Moscow" in text and "UTC" not in text
    assert_sources_in_order(text.split("**Источники:**")[1])


def test_docx_has_local_times_headings_and_every_quote_in_numeric_order():
    doc = Document(io.BytesIO(export.docx(conversation(), MOSCOW)))
    headings = [(p.style.name, p.text) for p in doc.paragraphs if p.style.name.startswith("Head")]
    assert headings == [
        ("Heading 1", "Ремонт санузла"),
        ("Heading 2", "Вы — 14.03.2026 17:05 MSK"),
        ("Heading 2", "Ассистент Advocata — 14.03.2026 17:06 MSK"),
    ]
    texts = [p.text for p in doc.paragraphs]
    sources_at = texts.index("Источники:")
    assert all(r.bold for r in doc.paragraphs[sources_at].runs)
    assert_sources_in_order("\n".join(texts[sources_at:]))
    assert all(r.italic for r in doc.paragraphs[-1].runs) and "юридическое" in texts[-1]


def test_pdf_has_page_numbers_bold_headings_and_every_quote_in_numeric_order():
    reader = PdfReader(io.BytesIO(export.pdf(conversation(), MOSCOW)))
    pages = len(reader.pages)
    assert pages >= 2
    bold: list[str] = []
    text = []
    for number, page in enumerate(reader.pages, 1):

        def visit(chunk, cm, tm, font, size):
            if chunk.strip() and font and "Bold" in str(font.get("/BaseFont")):
                bold.append(chunk.strip())

        page_text = page.extract_text(visitor_text=visit)
        assert f"Стр. {number} из {pages}" in page_text
        text.append(page_text)
    headings = " ".join(bold)
    for heading in (
        "Ремонт санузла",
        "Вы — 14.03.2026 17:05 MSK",
        "Ассистент Advocata — 14.03.2026 17:06 MSK",
        "Источники:",
    ):
        assert heading in headings
    assert "164 800" not in headings  # the answer itself is not bold
    whole = "\n".join(text)
    assert_sources_in_order(whole[whole.index("Источники:") :])


async def test_the_api_exports_in_the_configured_zone(make_client, auth, alice):
    h = auth(alice)
    async with make_client(export_timezone="Asia/Vladivostok", ws=False) as client:
        await upload(client, h, "contract.txt", CONTRACT.encode())
        cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
        r = await client.post(
            f"{CONV}/{cid}/messages",
            json={"message_content": "Сколько стоят работы?", "use_rag": True},
            headers=h,
        )
        created = datetime.fromisoformat(r.json()["messages"][0]["created_at"])
        text = (await client.get(f"{CONV}/{cid}/export", headers=h)).text
    local = created.astimezone(ZoneInfo("Asia/Vladivostok"))
    assert f"## Вы — {local:%d.%m.%Y %H:%M} +10" in text
    assert re.search(r"\[1\] contract: «[^»]*164 800", text)


def test_an_unknown_export_zone_is_refused(make_settings):
    with pytest.raises(ValueError, match="EXPORT_TIMEZONE|time zone"):
        make_settings(export_timezone="Europe/Atlantis")
