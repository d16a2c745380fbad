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


@dataclass
class Candidate:
    n: int
    text: str
    score: float = 0.0


def _candidates(sources: list[tuple[int, str, str]]) -> list[Candidate]:
    out = []
    for n, _title, body in sources:
        for s, e in sentences(body):
            piece = body[s:e]
            if len(piece.split()) >= 2:
                out.append(Candidate(n, piece if len(piece) <= 400 else piece[:399] + "…"))
    return out


def choose(
    question: str,
    sources: list[tuple[int, str, str]],
    *,
    embed: Callable[[list[str]], list[list[float]]] | None = None,
    threshold: float = 0.42,
    max_sentences: int = 3,
) -> list[Candidate]:
    """The sentences that answer the question, best first; empty means abstain."""
    cands = _candidates(sources)
    q_terms = set(terms(question))
    if not cands or not q_terms:
        return []
    sent_terms = [set(terms(c.text)) for c in cands]
    n = len(cands)
    idf = {t: math.log(1 + n / (1 + sum(t in st for st in sent_terms))) for t in q_terms}
    # A question word found nowhere in the sources gets the weight of the rarest word.
    total = sum(idf.values())
    sims = [0.0] * n
    if embed is not None:
        vectors = embed([question] + [c.text for c in cands])
        q = vectors[0]
        sims = [sum(a * b for a, b in zip(q, v, strict=True)) for v in vectors[1:]]
    rank_of = {num: i for i, num in enumerate(dict.fromkeys(c.n for c in cands))}
    for c, st, sim in zip(cands, sent_terms, sims, strict=True):
        overlap = sum(idf[t] for t in q_terms & st) / total
        c.score = 0.6 * overlap + 0.4 * max(sim, 0.0) + 0.02 / (1 + rank_of[c.n])
    ranked = sorted(cands, key=lambda c: -c.score)
    best = ranked[0]
    if best.score < threshold:
        return []
    chosen = [best]
    for c in ranked[1:]:
        if len(chosen) >= max_sentences or c.score < 0.75 * best.score:
            break
        if c.text not in {x.text for x in chosen}:
            chosen.append(c)
    return chosen


def compose(chosen: list[Candidate]) -> str:
    if not chosen:
        return ABSTAIN
    lines = [f"«{c.text.strip()}» [{c.n}]" for c in chosen]
    return "По вашим документам:\n\n" + "\n\n".join(lines) + "\n\n" + DISCLAIMER
