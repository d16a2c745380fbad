"""Extractive answering for the offline model: pick the source sentences that answer the
question, quote them with [n], or abstain when none does.

Scores mix word overlap (Snowball-stemmed, weighted by how rare a word is in the sources)
with sentence-embedding similarity when an embedder is available.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer

from advocata_chat.citations import sentences
from advocata_chat.retrieval import sub_questions

ABSTAIN = (
    "В ваших документах нет ответа на этот вопрос: в найденных фрагментах нет сведений, "
    "которые прямо на него отвечают. Загрузите документ, где это сказано, или уточните "
    "вопрос. Для решения по вашей ситуации обратитесь к практикующему юристу."
)
DISCLAIMER = (
    "Это дословные выдержки из ваших документов: генеративная модель не подключена, поэтому "
    "выводов я не делаю. Для юридически значимых решений обратитесь к практикующему юристу."
)

# Question words and pronouns carry no evidence; Snowball stems of them are dropped.
_STOP_WORDS = """
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только
    ее мне было вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть
    был него до вас нибудь опять уж вам ведь там потом себя ничего ей может они тут где есть надо
    ней для мы тебя их чем была сам чтоб без будто чего раз тоже себе под будет ж тогда кто этот
    того потому этого какой совсем ним здесь этом один почти мой тем чтобы нее сейчас были куда
    зачем всех никогда можно при наконец два об другой хоть после над больше тот через эти нас про
    всего них какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть том
    нельзя такой им более всегда конечно всю между сколько каков какие какое каким какую моего
    моей моих мои наш наша наше наши нашим нашего нашей свой своего своей которые который которая
    должен должна должны нужно согласно данным
"""
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[\w%]+(?:[-./][\w%]+)*", re.UNICODE)


@lru_cache(maxsize=1)
def _stemmer():
    return snowballstemmer.stemmer("russian")


@lru_cache(maxsize=20000)
def _stem(word: str) -> str:
    w = word.lower().replace("ё", "е")
    if any(ch.isdigit() for ch in w) or not w.isalpha():
        return w
    return _stemmer().stemWord(w)


def terms(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 1]


# A question's stem matches a sentence's when one is a prefix of the other and the shorter
# has at least STEM_PREFIX letters, as the text search matches them (store.py): Snowball
# stems "аренда" to "аренд" but "Арендная" to "арендн". Cross-validated (docs/quality.md).
STEM_PREFIX = 5


def _holds(term: str, sentence: set[str]) -> bool:
    """The sentence holds the question's stem, exactly or by prefix."""
    if term in sentence:
        return True
    return term.isalpha() and any(
        u.isalpha()
        and min(len(term), len(u)) >= STEM_PREFIX
        and (u.startswith(term) or term.startswith(u))
        for u in sentence
    )


# What kind of answer a question asks for, and how to recognise it in a sentence.
_NUMBER = re.compile(r"\d")
_PATTERNS = {
    # Legal text spells numbers out in brackets: "45 000 (сорок пять тысяч) рублей",
    # "5 (пяти) рабочих дней".
    "amount": re.compile(
        r"\d[\d\s]*(?:[.,]\d+)?\s*(?:\([^)\d]{1,80}\)\s*)?(?:%|руб|₽|рубл|тыс|млн)|\d+\s*%",
        re.I,
    ),
    "time": re.compile(
        r"\d+\s*(?:\([^)\d]{1,80}\)\s*)?(?:рабоч\w*\s+|календарн\w*\s+)?"
        r"(?:дн|день|недел|месяц|мес\.|год|лет|час)"
        r"|\d{1,2}\.\d{1,2}\.\d{2,4}|\d{1,2}\s+(?:январ|феврал|март|апрел|ма[яй]|июн|июл|август"
        r"|сентябр|октябр|ноябр|декабр)",
        re.I,
    ),
    "person": re.compile(
        r"[А-ЯЁ][а-яё]+\s+[А-ЯЁ]\.\s?[А-ЯЁ]\.|[А-ЯЁ][а-яё]+(?:ой|ым|ов|ев|ин|ий|ая|на)?\s+"
        r"[А-ЯЁ][а-яё]+(?:ем|ой|ом|ы|а|у)?\s+[А-ЯЁ][а-яё]+(?:вич|вна|вной|вичем|вича)|"
        r"(?:ООО|АО|ПАО|ИП)\s"
    ),
    "place": re.compile(r"(?:ул\.|д\.|кв\.|г\.|просп\.|шоссе)\s*\S", re.I),
    "code": re.compile(r"\b[A-ZА-ЯЁ]{1,5}\d[\w-]*\d|\b\d{2,}[-/]\d{2,}", re.I),
}
_QUESTION_TYPES = [
    (
        re.compile(
            r"\b(?:сколько|какова?\s+(?:сумма|цена|стоимость|размер)|какой\s+размер|"
            r"каков\w*\s+размер|почём)",
            re.I,
        ),
        "amount",
    ),
    (
        re.compile(
            r"\b(?:когда|какой\s+срок|в\s+какой\s+срок|какого\s+числа|до\s+какого|"
            r"сколько\s+(?:дней|лет|месяцев))",
            re.I,
        ),
        "time",
    ),
    (re.compile(r"\b(?:кто|как\s+зовут|какой\s+нотариус|кем|кому|чей|чья)", re.I), "person"),
    (
        re.compile(r"\b(?:где|по\s+какому\s+адресу|какой\s+адрес|для\s+какой\s+квартиры)", re.I),
        "place",
    ),
    (re.compile(r"\b(?:номер|серийн|артикул|код)", re.I), "code"),
]


def answer_types(question: str) -> set[str]:
    return {kind for pattern, kind in _QUESTION_TYPES if pattern.search(question)}


def _yes_no_focus(question: str) -> str | None:
    """The word a yes/no question asks about: "Согласилась ли ..." -> "согласилась"."""
    m = re.match(r"\s*(?:а\s+|и\s+)?(\w+)\s+ли\b", question, re.I)
    return m.group(1) if m else None


@dataclass
class Candidate:
    n: int
    text: str
    score: float = 0.0  # the ranker's score (SENTENCE_WEIGHTS): orders the candidates
    evidence: float = 0.0  # closeness in meaning to the question: decides abstention
    rank: int = 0  # position of its source in the context (retrieval's order)
    first: bool = False  # the first sentence of its source
    document: str = ""  # its source's title: two chunks of one document are one document


def _fields(pieces: list[str]) -> list[str]:
    """A field label and its value on the next line ("Арендная плата:" / "45 000 руб.")
    are one unit: the label says what the value is, the value is the answer."""
    out: list[str] = []
    for piece in pieces:
        if out and out[-1].endswith(":") and len(out[-1]) <= 80:
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def _candidates(sources: list[tuple[int, str, str]]) -> list[Candidate]:
    out = []
    for rank, (n, title, body) in enumerate(sources):
        pieces = _fields([body[s:e] for s, e in sentences(body)])
        for i, piece in enumerate(pieces):
            # A heading ("ПРЕДМЕТ ДОГОВОРА") names a topic and answers nothing.
            if len(piece.split()) >= 2 and any(ch.islower() for ch in piece):
                text = piece if len(piece) <= 400 else piece[:399] + "…"
                out.append(Candidate(n, text, rank=rank, first=i == 0, document=title))
    return out


Similarity = Callable[[str, list[str]], list[float]]

# The sentence ranker: a linear score over a few features, its weights fitted by 5-fold
# cross-validation over the dev + dev2 questions (a conditional logit: softmax over each
# question's candidate sentences, the sentences holding the gold snippet as positives).
# These are the mean of the five folds' weights, which differ from it by at most 0.5;
# held-out figures and the command are in docs/quality.md, "Third pass" to "Fifth pass"
# (`python -m bench.answerer`).
SENTENCE_WEIGHTS = {
    "words": 4.15,  # share of the question's rare words in the sentence (idf-weighted)
    "meaning": 5.25,  # e5 question-sentence similarity, rescaled from the embedder's floor
    "kind": 1.35,  # +1 has the kind of answer asked for (amount, date, name), -1 lacks it
    "rank": 1.55,  # 1 / (1 + position of its source): retrieval already ordered them
    "first": -0.2,  # the first sentence of a source (often a cut-off or a preamble)
    "length": 0.85,  # length / 400 characters: a clause says more than a fragment
    "number": 1.25,  # holds a digit: the facts asked about are amounts, dates, numbers
    "document": 1.45,  # share of the question's rare words its document holds, minus the best's
}
LEXICAL_EVIDENCE = 0.5
# A best sentence scoring this high is quoted even when its meaning looks far from the
# question ("До какого числа вернуть деньги?" / "Вернуть до 1 мая 2026 года."): a clear
# answer is not refused. Cross-validated jointly with the threshold over dev + dev2, in the
# ranker's units: 6.0 in all five folds with the weights above (docs/quality.md, "Fifth
# pass"; 5.5 with the third pass's weights, whose scores ran about 0.45 lower).
CLEAR_ANSWER = 6.0
# Sentences the ranker embeds per answer, best sources first (e5: ~20 sentences a second).
MAX_EMBEDDED = 120


def sentence_similarity(embeddings, cache: dict | None = None) -> Similarity:
    """(question, sentences) -> how close each sentence is, 0 for unrelated, up to 1.

    Cosines are rescaled from the embedder's `similarity_floor`, the cosine of unrelated
    Russian sentence pairs: about 0.8 for e5 (which compresses everything into 0.75-0.95)
    and 0 for USE. Without that, every sentence looks related under e5 and nothing abstains.
    `cache` (text -> vector) may outlive one answer: the same chunks come back turn after
    turn, and embedding the sentences is the slow part of an offline answer.
    """
    floor = getattr(embeddings, "similarity_floor", 0.0)
    seen = {} if cache is None else cache  # anything with get(text) and update(pairs)

    def similarity(question: str, texts: list[str]) -> list[float]:
        q = embeddings.embed_query(question)
        vectors = {t: seen.get(t) for t in dict.fromkeys(texts)}
        new = [t for t, v in vectors.items() if v is None]
        if new:
            pairs = list(zip(new, embeddings.embed_documents(new), strict=True))
            vectors.update(pairs)
            seen.update(pairs)
        cos = [sum(a * b for a, b in zip(q, vectors[t], strict=True)) for t in texts]
        return [max(c - floor, 0.0) / (1.0 - floor) for c in cos]

    return similarity


def features(
    question: str, cands: list[Candidate], embed: Similarity | None
) -> list[dict[str, float]]:
    """What the ranker weighs, per candidate (keys of SENTENCE_WEIGHTS); sets evidence."""
    q_terms = set(terms(question))
    kinds = answer_types(question)
    sent_terms = [set(terms(c.text)) for c in cands]
    n = len(cands)
    shared = [{t for t in q_terms if _holds(t, st)} for st in sent_terms]
    idf = {t: math.log(1 + n / (1 + sum(t in s for s in shared))) for t in q_terms}
    total = sum(idf.values()) or 1.0
    overlaps = [sum(idf[t] for t in s) / total for s in shared]
    # The words a document holds across its sentences: a question's words are often split
    # between the clause that answers and the ones around it, and the document that holds
    # all of them is likelier the one asked about. Relative to the best document (<= 0), so
    # the best sentence's score, which CLEAR_ANSWER is compared with, rarely moves.
    held: dict[str, set[str]] = {}
    for c, s in zip(cands, shared, strict=True):
        held.setdefault(c.document, set()).update(s)
    coverage = {d: sum(idf[t] for t in s) / total for d, s in held.items()}
    widest = max(coverage.values(), default=0.0)
    sims = [0.0] * n
    if embed is not None:
        pick = sorted(range(n), key=lambda i: cands[i].rank)[:MAX_EMBEDDED]
        for i, sim in zip(pick, embed(question, [cands[i].text for i in pick]), strict=True):
            sims[i] = sim
    out = []
    for c, overlap, sim in zip(cands, overlaps, sims, strict=True):
        kind = 0.0
        if kinds:
            kind = 1.0 if any(_PATTERNS[k].search(c.text) for k in kinds) else -1.0
        out.append(
            {
                "words": overlap,
                "meaning": sim,
                "kind": kind,
                "rank": 1 / (1 + c.rank),
                "first": float(c.first),
                "length": min(len(c.text), 400) / 400,
                "number": float(bool(_NUMBER.search(c.text))),
                "document": coverage[c.document] - widest,
            }
        )
        # Abstention looks at the evidence alone: the rank of a source says which is
        # likeliest, not whether any answers. Meaning, or half the word overlap, whichever
        # is larger: a sentence holding the question's rare words answers it even when e5
        # finds it far ("Серийный номер: TV80-…"); it separates as well as meaning alone.
        c.evidence = max(sim, LEXICAL_EVIDENCE * overlap) if embed is not None else overlap
    return out


def _score(
    question: str,
    sources: list[tuple[int, str, str]],
    embed: Similarity | None,
) -> list[Candidate] | None:
    """Candidate sentences, best first; None when the sources cannot settle the question."""
    cands = _candidates(sources)
    if not cands or not terms(question):
        return None
    for c, f in zip(cands, features(question, cands, embed), strict=True):
        c.score = sum(SENTENCE_WEIGHTS[k] * v for k, v in f.items())
    ranked = sorted(cands, key=lambda c: -c.score)
    focus = _yes_no_focus(question)
    if focus and focus.lower() not in _STOP:
        near = set().union(*(terms(c.text) for c in ranked[:3]))
        if _stem(focus) not in near:
            # "Did X agree ...?" and the relevant sentences never mention agreeing: an
            # extract cannot answer yes or no, so say the documents do not settle it.
            return None
    return ranked


def best_score(
    question: str,
    sources: list[tuple[int, str, str]],
    *,
    embed: Similarity | None = None,
) -> float | None:
    """The score the abstention threshold is compared with (None: always abstain)."""
    ranked = _score(question, sources, embed)
    return _closeness(ranked) if ranked else None


def _closeness(ranked: list[Candidate]) -> float:
    """How close in meaning the closest sentence of the context is to the question; a clear
    answer (CLEAR_ANSWER) passes any threshold."""
    return math.inf if ranked[0].score >= CLEAR_ANSWER else max(c.evidence for c in ranked)


# Further sentences of the best document join it when they score within SAME_DOCUMENT of
# it (at most MAX_SAME of them): the answer is often the clause next to the best-matching
# one, and quoting more of the right document costs no precision. Cross-validated with the
# ranker (docs/quality.md, "Third pass").
SAME_DOCUMENT = 3.0
MAX_SAME = 3
MAX_SENTENCES = 5


def choose(
    question: str,
    sources: list[tuple[int, str, str]],
    *,
    embed: Similarity | None = None,
    threshold: float = 0.25,
    other_document: float = 1.5,
) -> list[Candidate]:
    """The sentences that answer the question, best first; empty means abstain.

    The best sentence, the best one for each part of a compound question, the sentences of
    the best document that score close to it, and the best sentence of one other document
    when it scores within `other_document` of the best (cross-validated; negative: never):
    a question may need two documents, but quoting a weaker one mixes unrelated text into
    the answer.
    """
    ranked = _score(question, sources, embed)
    if not ranked or _closeness(ranked) < threshold:
        return []
    # Sources are told apart by document title: two chunks of one document are one document.
    title = {n: t for n, t, _ in sources}
    best = ranked[0]
    chosen = [best]

    def add(c: Candidate) -> None:
        if c.text not in {x.text for x in chosen}:
            chosen.append(c)

    for part in sub_questions(question):
        for c in (_score(part, sources, embed) or [])[:1]:
            if c.evidence >= threshold:
                add(c)
    same = [c for c in ranked[1:] if title[c.n] == title[best.n]]
    for c in same[:MAX_SAME]:
        if c.score >= best.score - SAME_DOCUMENT:
            add(c)
    documents = {title[c.n] for c in chosen}
    other = next((c for c in ranked if title[c.n] not in documents), None)
    if other is not None and other.score >= best.score - other_document:
        add(other)
    return chosen[:MAX_SENTENCES]


def compose(chosen: list[Candidate]) -> str:
    if not chosen:
        return ABSTAIN
    lines = [f"«{c.text.strip()}» [{c.n}]" for c in chosen]
    return "По вашим документам:\n\n" + "\n\n".join(lines) + "\n\n" + DISCLAIMER
