"""Citation quotes: the sentence of the chunk that the cited claim is about."""

from __future__ import annotations

from advocata_chat.citations import extract_citations

CHUNK = (
    "1. Подрядчик обязуется выполнить ремонт квартиры.\n"
    "2. Цена работ составляет 164 800 рублей.\n"
    "3. Срок выполнения работ — до 1 марта 2026 года."
)
SOURCE = {"n": 1, "document_id": "d", "chunk_id": "c", "title": "t", "start": 100, "end": 200}


def test_a_marker_after_a_closing_quote_cites_the_quoted_sentence():
    # The offline answerer quotes whole sentences: the full stop sits inside the quotes.
    answer = "По вашим документам:\n\n«Цена работ составляет 164 800 рублей.» [1]"
    [cite] = extract_citations(answer, [{**SOURCE, "content": CHUNK}])[0]
    assert cite["quote"] == "Цена работ составляет 164 800 рублей."
    assert CHUNK[cite["quote_start"] - 100 : cite["quote_end"] - 100] == cite["quote"]


def test_a_marker_inside_the_sentence_still_cites_it():
    answer = "Работы надо закончить до 1 марта 2026 года [1]."
    [cite] = extract_citations(answer, [{**SOURCE, "content": CHUNK}])[0]
    assert "1 марта 2026" in cite["quote"]


def test_a_source_cited_for_two_claims_keeps_both_passages():
    answer = (
        "Цена работ — 164 800 рублей [1]. Работы надо закончить до 1 марта 2026 года [1]. "
        "Ещё раз: цена 164 800 рублей [1]."
    )
    [cite], documents = extract_citations(answer, [{**SOURCE, "content": CHUNK}])
    assert documents == ["d"]
    assert [q["quote"] for q in cite["quotes"]] == [
        "Цена работ составляет 164 800 рублей.",
        "Срок выполнения работ — до 1 марта 2026 года.",
    ]
    assert cite["quote"] == cite["quotes"][0]["quote"]
    for q in cite["quotes"]:
        assert CHUNK[q["quote_start"] - 100 : q["quote_end"] - 100] == q["quote"]
