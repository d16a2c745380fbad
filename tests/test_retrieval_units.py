"""Pure parts of retrieval, context and evaluation: fusion, the diversity swap, packing the
context, offline sentence choice, keyword matching, cross-validation folds."""

from __future__ import annotations

import uuid

from advocata_chat.evaluation import cross_validate, folds, keyword_found, snippets_in
from advocata_chat.retrieval import diversify, fuse
from advocata_chat.store import Hit

A, B, C = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def hit(cid: str, doc: uuid.UUID, score: float = 0.0) -> Hit:
    return Hit(cid, doc, "t", cid, 0, 1, None, 0, score=score, found_by={"vector"})


def test_weighted_fusion_prefers_the_heavier_ranking():
    vector = [hit("v1", A), hit("v2", A)]
    text = [hit("t1", B), hit("t2", B)]
    assert [h.chunk_id for h in fuse([(vector, 2.0), (text, 1.0)], rrf_k=60)] == [
        "v1",
        "v2",
        "t1",
        "t2",
    ]
    assert [h.chunk_id for h in fuse([(vector, 1.0), (text, 2.0)], rrf_k=60)][0] == "t1"


def test_diversify_swaps_in_one_other_document_at_most():
    ranked = [hit(f"a{i}", A, 10 - i) for i in range(5)] + [hit("b", B, 4), hit("c", C, 3)]
    top = diversify(ranked, 5)
    ids = [h.chunk_id for h in top]
    assert "b" in ids and "c" not in ids  # one newcomer, the best-ranked one
    assert ids[:4] == ["a0", "a1", "a2", "a3"]  # the weakest chunk of A made room


def test_diversify_leaves_a_varied_top_alone():
    ranked = [hit("a", A, 5), hit("b", B, 4), hit("c", C, 3), hit("a2", A, 2), hit("b2", B, 1)]
    assert diversify(ranked, 3) == ranked[:3]


def test_keywords_match_without_spaces_and_numbers_stand_alone():
    assert keyword_found("164 800", "Цена — 164800 руб.")
    assert keyword_found("Рабочих дней", "в течение 5 рабочих  дней")
    assert not keyword_found("5", "в течение 15 дней")
    assert snippets_in(["Ёлка  растёт"], ["где-то елка растет здесь"])


def test_cross_validation_scores_each_question_on_a_fold_it_was_not_fitted_on():
    ids = [f"q{i}" for i in range(10)]
    parts = folds(ids, 5)
    assert sorted(i for p in parts for i in p) == sorted(ids) and all(len(p) == 2 for p in parts)

    # "b" is right on q0 and q1 only, "a" everywhere else: the fold holding q0 and q1 out
    # still picks "a" (fitted on the other folds) and scores it on them, so the held-out
    # figure is below what picking per question would give.
    def score(g: str, q: str) -> float:
        return float((g == "b") == (q in {"q0", "q1"}))

    held, picks = cross_validate(ids, ["a", "b"], score)
    assert picks == ["a"] * 5 and held == 0.8


def test_touching_chunks_of_one_document_become_one_source():
    from langchain_core.documents import Document

    from chains.context import pack_sources

    text = "Первый пункт договора. Второй пункт договора. Третий пункт договора."
    doc = str(A)

    def chunk(s: int, e: int, document: str = doc) -> Document:
        meta = {"document_id": document, "start": s, "end": e, "title": "Договор"}
        return Document(page_content=text[s:e], metadata=meta)

    ranked = [chunk(23, 46), chunk(0, 30), chunk(40, len(text)), chunk(0, 10, str(B))]
    packed = pack_sources(ranked, max_tokens=4000)
    first, other = packed["sources"]
    assert (first["start"], first["end"], first["content"]) == (0, len(text), text)
    assert first["n"] == 1 and other["document_id"] == str(B) and other["n"] == 2


WORKS = [
    (1, "Договор подряда", "Цена работ по договору составляет 164 800 рублей."),
    (2, "Расписка", "Подрядчик получил от заказчика аванс по договору в размере 50 000 рублей."),
    (3, "Справка о доходах", "Средняя месячная зарплата заказчика составляет 90 000 рублей."),
]


def test_an_offline_answer_quotes_a_second_document_that_answers_nearly_as_well():
    from advocata_chat.extractive import choose, compose

    question = "Какая цена работ по договору, если подрядчик уже получил аванс?"
    answer = compose(choose(question, WORKS, threshold=0.1, other_document=0.7))
    assert "164 800" in answer and "50 000" in answer and "[1]" in answer and "[2]" in answer
    assert "90 000" not in answer  # the salary answers nothing here
    # With the second document switched off (a negative margin), only the best one is quoted.
    alone = choose(question, WORKS, threshold=0.1, other_document=-1.0)
    assert len({c.n for c in alone}) == 1


def test_an_offline_answer_to_a_one_document_question_quotes_that_document_only():
    from advocata_chat.extractive import choose

    chosen = choose("Какова цена работ по договору?", WORKS, threshold=0.1, other_document=0.7)
    assert {c.n for c in chosen} == {1}


def test_an_offline_answer_to_the_rent_question_quotes_the_rent_not_a_salary():
    """Snowball stems "аренда" to "аренд" and "Арендная" to "арендн"; matched by prefix, the
    rent clause shares the question's rarest word, the salary only "в месяц" (issue 12)."""
    from advocata_chat.extractive import choose

    sources = [
        (1, "Договор аренды квартиры", "Арендная плата составляет 45 000 рублей в месяц."),
        (2, "Трудовой договор", "Должностной оклад составляет 92 000 рублей в месяц."),
    ]
    question = "Сколько стоит аренда квартиры в месяц?"
    chosen = choose(question, sources, threshold=0.1, other_document=1.5)
    assert [c.n for c in chosen] == [1] and "45 000" in chosen[0].text


def test_an_offline_answer_quotes_the_document_that_holds_all_of_the_question():
    """The contract holds every word of the question across two clauses; the memo holds
    most of them in one sentence. Scored by its sentence alone the memo came within 0.1 of
    the contract and was quoted beside it; the document's coverage of the question keeps it
    out (docs/quality.md, "Fifth pass")."""
    from advocata_chat.extractive import _candidates, choose, features

    memo = (
        1,
        "Памятка покупателю",
        "Покупатель вправе потребовать неустойку за просрочку поставки товара.",
    )
    deal = (
        2,
        "Договор поставки",
        "За каждый день просрочки поставки Поставщик уплачивает неустойку. "
        "Неустойка начисляется на стоимость товара, поставленного с опозданием.",
    )
    question = "Как начисляется неустойка за каждый день просрочки поставки товара?"
    chosen = choose(question, [memo, deal], threshold=0.1, other_document=0.5)
    assert {c.n for c in chosen} == {2} and len(chosen) == 2
    cands = _candidates([memo, deal])
    document = [f["document"] for f in features(question, cands, None)]
    assert document[0] < 0 and document[1:] == [0.0, 0.0]


def test_the_diversity_swap_is_tuned_by_its_ratio():
    from advocata_chat.retrieval import SearchParams, rank_hits

    ranked = [hit(f"a{i}", A) for i in range(5)] + [hit("b", B)]
    lists = [("vector", ranked)]
    plain = rank_hits(lists, SearchParams(top_k=5, diversify=1.0))
    assert [h.chunk_id for h in plain[:5]] == [f"a{i}" for i in range(5)]
    swapped = rank_hits(lists, SearchParams(top_k=5, diversify=0.0))
    assert "b" in [h.chunk_id for h in swapped[:5]]
    # The default swaps only a close newcomer: "b" ranks right below the cut (RRF k 60).
    close = rank_hits(lists, SearchParams(top_k=5))
    assert "b" in [h.chunk_id for h in close[:5]]


def test_the_diversity_swap_does_not_depend_on_document_ids():
    # Two documents with two chunks each in the top 5 and a close newcomer: the weakest of
    # those four makes room, whichever ids the documents got on upload (ids are new per
    # upload; picking by set order made re-ingested documents rank differently).
    results = []
    for x, y in ((uuid.UUID(int=1), uuid.UUID(int=2)), (uuid.UUID(int=2), uuid.UUID(int=1))):
        ranked = [
            hit("x0", x, 10),
            hit("y0", y, 9),
            hit("c", C, 8),
            hit("y1", y, 7),
            hit("x1", x, 6),
            hit("n", B, 5.9),
        ]
        results.append([h.chunk_id for h in diversify(ranked, 5, ratio=0.9)])
    assert results[0] == results[1] == ["x0", "y0", "c", "y1", "n"]


def test_the_diversity_swap_leaves_a_far_weaker_other_document_out():
    ranked = [hit(f"a{i}", A, 10 - i) for i in range(5)] + [hit("b", B, 1)]
    assert [h.chunk_id for h in diversify(ranked, 5, ratio=0.8)] == [f"a{i}" for i in range(5)]
    assert "b" in [h.chunk_id for h in diversify(ranked, 5, ratio=0.0)]


def test_eval_shows_which_context_budget_would_have_held_the_gold_passage():
    from advocata_chat.evaluation import Question, context_budgets
    from advocata_chat.retrieval import SearchParams

    # Three ranked chunks of ~60 tokens each; the gold clause is in the third.
    bodies = [f"Пункт {i}. " + "Арендатор обязан вносить плату своевременно. " * 6 for i in (1, 2)]
    bodies.append("Пункт 3. Содержание домашних животных допускается с согласия наймодателя.")
    ranked = [
        Hit(str(i), uuid.uuid4(), "Договор", body, 0, len(body), None, i, score=1 / (i + 1))
        for i, body in enumerate(bodies)
    ]
    q = Question(
        id="q",
        set="dev",
        user="dev:u",
        question="Можно ли держать кошку?",
        gold_docs=("dev:lease",),
        snippets=("Содержание домашних животных допускается",),
        keywords=(),
        kind="paraphrase",
    )
    # Each long chunk costs ~155 tokens with its source tag: only twice the budget reaches
    # the third chunk.
    curve = context_budgets({"q": ranked}, [q], 200, SearchParams())
    assert curve == {100: 0.0, 200: 0.0, 300: 0.0, 400: 1.0}


class _NoMeaning:
    """Embeddings that find nothing alike: the evidence is the word overlap alone."""

    def embed_query(self, text):
        return [0.0, 0.0]

    def embed_documents(self, texts):
        return [[0.0, 0.0] for _ in texts]


def test_abstention_cross_validation_refuses_the_unanswerable_and_answers_the_rest():
    from advocata_chat.evaluation import Question, QuestionResult, abstention_cv

    source = [{"n": 1, "title": "Договор", "content": "Цена работ по договору — 164 800 рублей."}]
    questions, results = [], []
    for i in range(30):
        answerable = i % 3 != 0
        text = "Какая цена работ по договору?" if answerable else "Какой размер алиментов?"
        q = Question(
            f"q{i}",
            "s",
            "s:u",
            text,
            ("s:d",) if answerable else (),
            (),
            (),
            "lookup" if answerable else "no_answer",
        )
        questions.append(q)
        results.append(
            QuestionResult(q.id, q.kind, None, None, None, [], None, None, False, 0, sources=source)
        )
    cv = abstention_cv(results, questions, _NoMeaning())
    assert cv["held_out_abstention_no_answer"] == 1.0
    assert cv["held_out_false_abstention"] == 0.0


def test_an_answer_is_scored_on_every_gold_document_and_uncited_answers_score_no_precision():
    from advocata_chat.evaluation import Question, answer_figures

    two_docs = Question(
        "m1", "s", "s:u", "Сколько и когда?", ("s:a", "s:b"), (), ("45 000", "1 мая"), "multi_hop"
    )
    half = answer_figures(two_docs, "«Цена — 45 000 рублей.» [1]", ["s:a", "s:c"])
    assert half == {
        "docs_cited": False,  # one gold document of two
        "citation_precision": 0.5,
        "keyword_recall": 0.5,
        "abstained": False,
    }
    uncited = answer_figures(two_docs, "Цена 45 000 рублей, срок 1 мая.", [])
    assert uncited["citation_precision"] == 0.0 and uncited["keyword_recall"] == 1.0
    refused = answer_figures(two_docs, "В ваших документах нет ответа на этот вопрос.", [])
    assert refused["abstained"] and refused["citation_precision"] is None


def test_search_defaults_agree_with_the_settings():
    """The context's chunk count has two homes (SearchParams for code that builds its own,
    Settings for the runtime); docs/quality.md measured them as one setting with the budget."""
    from advocata_chat.config import Settings
    from advocata_chat.retrieval import SearchParams

    s, p = Settings(_env_file=None), SearchParams()
    assert (p.context_k, p.candidates, p.top_k) == (
        s.rag_context_chunks,
        s.rag_candidates,
        s.rag_top_k,
    )


def test_the_eval_counts_the_questions_the_system_wins_and_loses_against_each_baseline():
    from advocata_chat.evaluation import QuestionResult, Report, won_lost_table

    def result(qid: str, kind: str, hit: bool) -> QuestionResult:
        return QuestionResult(qid, kind, hit, hit, None, [], None, None, False, 0)

    results = [result("l1", "lookup", True), result("l2", "lookup", False)]
    results += [result("p1", "paraphrase", True), result("n1", "no_answer", False)]
    # The baselines miss l1 and p1 and find l2: the system wins two and loses one.
    miss = {"l1": False, "l2": True, "p1": False}
    report = Report([], {"current": results}, {m: miss for m in ("vector", "bm25", "rrf")}, {})
    rows = {line.split()[0]: line.split()[2:] for line in won_lost_table(report).splitlines()[2:]}
    assert rows == {
        "ALL": ["+2", "-1"] * 3,
        "lookup": ["+1", "-1"] * 3,
        "paraphrase": ["+1", "-0"] * 3,
    }
