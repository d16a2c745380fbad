"""The numbered-source format shared by the prompt, the offline model and citations.

Sources reach the model as `<source id="n" title="...">text</source>` blocks; answers cite
them as [n]. Citations map each [n] back to the chunk, its span in the document, and a
short quote.
"""

from __future__ import annotations

import re
from html import escape, unescape

SOURCE_OPEN = '<source id="{n}" title="{title}">'
SOURCE_CLOSE = "</source>"
NO_SOURCES = "(В документах пользователя не найдено подходящих фрагментов.)"

_SOURCE = re.compile(r'<source id="(\d+)" title="([^"]*)">\n(.*?)\n</source>', re.DOTALL)
_CITE = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
# A sentence ends at . ! ? … or a line break, but not after an abbreviation ("ул.", "д.",
# "руб.") or an initial ("Р.М.") that Russian legal text is full of.
_END = re.compile(r"[.!?…]+(?=\s|$)|\n")
_ABBREVIATIONS = frozenset(
    "г гг д ул кв пр просп пер ш обл р-н р руб коп тыс млн млрд т е п пп ст ч см им др "
    "тел стр рис табл прим нояб дек янв февр сент окт авг мин сек шт кг м км".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def format_source(n: int, title: str, body: str) -> str:
    return f"{SOURCE_OPEN.format(n=n, title=escape(title, quote=True))}\n{body}\n{SOURCE_CLOSE}"


def parse_sources(text: str) -> list[tuple[int, str, str]]:
    """(n, title, body) of every source block in a prompt."""
    return [(int(n), unescape(t), body) for n, t, body in _SOURCE.findall(text)]


def cited_numbers(answer: str) -> list[int]:
    seen: list[int] = []
    for group in _CITE.findall(answer):
        for n in group.split(","):
            if int(n) not in seen:
                seen.append(int(n))
    return seen


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line in `text`, whitespace trimmed."""
    cuts = [0]
    for m in _END.finditer(text):
        if m.group() != "\n":
            word = re.search(r"(\w+)$", text[max(0, m.start() - 12) : m.start()])
            token = word.group(1) if word else ""
            if token.lower() in _ABBREVIATIONS or (len(token) == 1 and token.isupper()):
                continue
        cuts.append(m.end())
    cuts.append(len(text))
    spans = []
    for s, e in zip(cuts, cuts[1:], strict=False):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s and _WORD.search(text, s, e):
            spans.append((s, e))
    return spans


def _words(text: str) -> set[str]:
    return {w.lower()[:6] for w in _WORD.findall(text) if len(w) > 2}


def _claim_before(answer: str, position: int) -> str:
    # A marker after a closing quote («… рублей.» [1]) follows a sentence end with no words
    # after it: the claim is the sentence before that end.
    end = position
    while True:
        start = max(answer.rfind(c, 0, end) for c in ".!?\n")
        claim = answer[start + 1 : position]
        if start < 0 or _WORD.search(claim):
            return claim
        end = start


def _quote(source: dict, claim: set[str]) -> dict:
    """The sentence of the chunk that best matches the claim, with its span in the document."""
    body = source["content"]
    spans = sentences(body) or [(0, len(body))]
    best = max(spans, key=lambda sp: (len(claim & _words(body[sp[0] : sp[1]])), -sp[0]))
    quote = body[best[0] : best[1]]
    if len(quote) > 300:
        quote = quote[:299] + "…"
    return {
        "quote": quote,
        "quote_start": source["start"] + best[0],
        "quote_end": source["start"] + best[1],
    }


def unknown_citations(answer: str, sources: list[dict]) -> list[int]:
    """Markers that point to no source ("[7]" with four sources): a model inventing a
    reference. They are left out of `citations` and listed in the answer's `generation`."""
    known = {s["n"] for s in sources}
    found = (int(raw) for m in _CITE.finditer(answer) for raw in m.group(1).split(","))
    return sorted({n for n in found if n not in known})


def extract_citations(answer: str, sources: list[dict]) -> tuple[list[dict], list[str]]:
    """Citations for every valid [n] in the answer, and the documents they cite.

    One citation per source, in order of first mention. Its quote is the sentence of the
    cited chunk that best matches the claim the marker follows; its span is given in the
    document's extracted text. A source cited for several claims lists every distinct
    passage in `quotes` (the first is also `quote`).
    """
    by_n = {s["n"]: s for s in sources}
    cited: dict[int, dict] = {}
    documents: list[str] = []
    for m in _CITE.finditer(answer):
        claim = _words(_claim_before(answer, m.start()))
        for raw in m.group(1).split(","):
            source = by_n.get(int(raw))
            if source is None:
                continue
            quote = _quote(source, claim)
            citation = cited.get(source["n"])
            if citation is not None:
                if quote not in citation["quotes"]:
                    citation["quotes"].append(quote)
                continue
            cited[source["n"]] = {
                "n": source["n"],
                "document_id": source["document_id"],
                "chunk_id": source["chunk_id"],
                "title": source.get("title"),
                "page": source.get("page"),
                "start": source["start"],
                "end": source["end"],
                **quote,
                "quotes": [quote],
            }
            if source["document_id"] not in documents:
                documents.append(source["document_id"])
    return list(cited.values()), documents
