"""Quality harness: ingest evaluation sets' documents per user, ask their questions through
the public API as those users, and score retrieval, citations, answers, abstention and
leakage, per kind of question, beside naive baselines computed in the same run.

Set layout: `docs/<user>_<name>.<ext>` and `questions.jsonl` with id, user, question,
gold_doc / gold_snippet ("|" separates several), answer_keywords and kind (`no_answer`
questions have no gold). Several sets can be evaluated at once; users are told apart by
set, so `u1` of one set never sees the documents of `u1` of another.

Every tunable figure of retrieval (fusion weights, `rrf_k`) and of the offline answerer
(the abstention threshold, the second document's margin) is also chosen by k-fold
cross-validation here (the answerer's sentence weights by `python -m bench.answerer`); the figures
printed for those are the held-out folds', never the ones fitted on the same questions.
"""

from __future__ import annotations

import json
import math
import random
import re
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from advocata_chat.auth import mint_token
from advocata_chat.config import Settings
from advocata_chat.extractive import terms
from advocata_chat.prompts import PromptSet

ABSTAIN_MARKER = re.compile(r"нет ответа|не содерж\w* ответ|не нашл\w* ответ", re.IGNORECASE)
BASELINE_CHUNK, BASELINE_OVERLAP, BASELINE_K = 1000, 200, 5


class EvalSetError(ValueError):
    """An evaluation set folder that cannot be read; the message says what to fix."""


def normalize(text: str) -> str:
    return " ".join(text.lower().replace("ё", "е").split())


def keyword_found(keyword: str, text: str) -> bool:
    """The set's rule: compare without case and whitespace; a number must not be part of a
    longer number."""
    kw = re.sub(r"\s+", "", keyword.lower().replace("ё", "е"))
    hay = re.sub(r"\s+", "", text.lower().replace("ё", "е"))
    if kw.isdigit() or re.fullmatch(r"[\d.,]+", kw):
        return re.search(rf"(?<!\d){re.escape(kw)}(?!\d)", hay) is not None
    return kw in hay


@dataclass(frozen=True)
class Question:
    id: str
    set: str
    user: str  # "<set>:<user>"
    question: str
    gold_docs: tuple[str, ...]  # "<set>:<file stem>"
    snippets: tuple[str, ...]
    keywords: tuple[str, ...]
    kind: str

    @property
    def answerable(self) -> bool:
        return self.kind != "no_answer"


@dataclass(frozen=True)
class EvalDoc:
    set: str
    user: str
    name: str  # "<set>:<file stem>"
    path: Path


def load_sets(set_dirs: Iterable[Path]) -> tuple[list[EvalDoc], list[Question]]:
    docs: list[EvalDoc] = []
    questions: list[Question] = []
    for set_dir in set_dirs:
        qfile, ddir = set_dir / "questions.jsonl", set_dir / "docs"
        if not qfile.is_file() or not ddir.is_dir():
            raise EvalSetError(
                f"{set_dir} is not an evaluation set: it needs docs/ and questions.jsonl "
                "(see docs/quality.md, 'Evaluation sets')"
            )
        name = set_dir.resolve().name
        for path in sorted(ddir.iterdir()):
            user = path.name.split("_", 1)[0]
            docs.append(EvalDoc(name, f"{name}:{user}", f"{name}:{path.stem}", path))
        for n, line in enumerate(qfile.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                q = json.loads(line)
                questions.append(
                    Question(
                        id=f"{name}:{q['id']}",
                        set=name,
                        user=f"{name}:{q['user']}",
                        question=q["question"],
                        gold_docs=tuple(
                            f"{name}:{d}" for d in (q.get("gold_doc") or "").split("|") if d
                        ),
                        snippets=tuple(s for s in (q.get("gold_snippet") or "").split("|") if s),
                        keywords=tuple(q.get("answer_keywords") or ()),
                        kind=q.get("kind") or "unknown",
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise EvalSetError(f"{qfile}:{n}: not a valid question line ({exc})") from exc
    return docs, questions


def snippets_in(snippets: Iterable[str], texts: Iterable[str]) -> bool:
    """Every gold snippet inside one of the texts (whitespace and case aside)."""
    normed = [normalize(t) for t in texts]
    return all(any(normalize(s) in t for t in normed) for s in snippets)


@dataclass
class QuestionResult:
    id: str
    kind: str
    snippet_hit: bool | None  # all gold snippets in the top-k of /search
    context_hit: bool | None  # ... in the sources the answer model saw
    docs_cited: bool | None  # every gold document cited
    cited_docs: list[str]
    citation_precision: float | None
    keyword_recall: float | None
    abstained: bool
    leaked: int
    answer: str = field(repr=False, default="")
    sources: list[dict] = field(repr=False, default_factory=list)


def _mean(values: Iterable[float | bool | None]) -> float:
    vals = [float(v) for v in values if v is not None]
    return round(sum(vals) / len(vals), 3) if vals else float("nan")


def summarize(results: list[QuestionResult]) -> dict[str, float | int]:
    answerable = [r for r in results if r.kind != "no_answer"]
    unanswerable = [r for r in results if r.kind == "no_answer"]
    return {
        "questions": len(results),
        "snippet_hit@k": _mean(r.snippet_hit for r in answerable),
        "snippet_hit@context": _mean(r.context_hit for r in answerable),
        "gold_docs_cited": _mean(r.docs_cited for r in answerable),
        "citation_precision": _mean(r.citation_precision for r in answerable),
        "keyword_recall": _mean(r.keyword_recall for r in answerable),
        "abstention_no_answer": _mean(r.abstained for r in unanswerable),
        "false_abstention": _mean(r.abstained for r in answerable),
        "leakage": sum(r.leaked for r in results),
    }


@dataclass
class Corpus:
    """The sets' documents, uploaded: who owns what, under which name."""

    settings: Settings
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    doc_names: dict[str, str] = field(default_factory=dict)  # document id -> "<set>:<stem>"
    owner: dict[str, str] = field(default_factory=dict)  # document id -> "<set>:<user>"

    def user_id(self, user: str) -> uuid.UUID:
        return self.users.setdefault(user, uuid.uuid4())

    def headers(self, user: str) -> dict[str, str]:
        token = mint_token(self.settings, user_id=self.user_id(user))
        return {"Authorization": f"Bearer {token}"}


async def ingest(client: httpx.AsyncClient, settings: Settings, docs: list[EvalDoc]) -> Corpus:
    corpus = Corpus(settings)
    for doc in docs:
        r = await client.post(
            "/api/v1/documents",
            params={"wait": True},
            headers=corpus.headers(doc.user),
            files={"file": (doc.path.name, doc.path.read_bytes())},
            data={"title": doc.path.stem},
        )
        r.raise_for_status()
        body = r.json()
        if body["status"] != "ready":
            raise RuntimeError(f"{doc.path.name}: indexing failed: {body['error']}")
        corpus.doc_names[body["id"]] = doc.name
        corpus.owner[body["id"]] = doc.user
    return corpus


async def _answer_over_sse(
    client: httpx.AsyncClient, conversation_id: str, question: str, headers: dict
) -> tuple[list[dict], dict]:
    """Send a message with `Accept: text/event-stream`: the `sources` frame is exactly what
    the answer model was given; the `message` frame is the stored answer."""
    sources: list[dict] = []
    final: dict | None = None
    async with client.stream(
        "POST",
        f"/api/v1/chat/conversations/{conversation_id}/messages",
        json={"message_content": question, "use_rag": True},
        headers={**headers, "Accept": "text/event-stream"},
    ) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            frame = json.loads(line[5:])
            if frame["type"] == "sources":
                sources = frame["sources"]
            elif frame["type"] == "message":
                final = frame["message"]
            elif frame["type"] == "error":
                raise RuntimeError(f"turn failed: {frame}")
    if final is None:
        raise RuntimeError("the stream ended without the stored answer")
    return sources, final


def answer_figures(q: Question, text: str, cited: list[str]) -> dict[str, float | bool | None]:
    """How one answer scores against its question, given the documents it cites (by name):
    every gold document cited, the share of cited documents that are gold (an answer that
    cites nothing and does not abstain scores 0), keywords found, abstained. The eval and
    `bench.answerer` both score with this, so their figures compare."""
    abstained = bool(ABSTAIN_MARKER.search(text))
    precision = None
    if q.gold_docs and cited:
        precision = sum(n in q.gold_docs for n in cited) / len(cited)
    elif q.gold_docs and not abstained:
        precision = 0.0
    return {
        "docs_cited": all(d in cited for d in q.gold_docs) if q.gold_docs else None,
        "citation_precision": precision,
        "keyword_recall": (
            sum(keyword_found(kw, text) for kw in q.keywords) / len(q.keywords)
            if q.keywords
            else None
        ),
        "abstained": abstained,
    }


async def ask(
    client: httpx.AsyncClient, corpus: Corpus, questions: list[Question], *, k: int = 5
) -> list[QuestionResult]:
    """Ask every question, each in a new conversation, and score the answers."""
    results = []
    for q in questions:
        h = corpus.headers(q.user)
        found = (
            await client.post("/api/v1/search", json={"query": q.question, "top_k": k}, headers=h)
        ).json()["results"]
        conv = (await client.post("/api/v1/chat/conversations", json={}, headers=h)).json()
        sources, answer = await _answer_over_sse(client, conv["id"], q.question, h)
        cited = [c["document_id"] for c in answer.get("citations", [])]
        cited_names = [corpus.doc_names.get(d, "?") for d in cited]
        text = answer["content"]
        results.append(
            QuestionResult(
                id=q.id,
                kind=q.kind,
                snippet_hit=snippets_in(q.snippets, (f["content"] for f in found))
                if q.snippets
                else None,
                context_hit=snippets_in(q.snippets, (s["content"] for s in sources))
                if q.snippets
                else None,
                cited_docs=cited_names,
                **answer_figures(q, text, cited_names),
                leaked=sum(1 for d in cited if corpus.owner.get(d) != q.user),
                answer=text,
                sources=sources,
            )
        )
    return results


# ---------------------------------------------------------------------------------------
# Naive baselines: the LangChain recipe, on the same extracted text, in the same run.


class _BM25:
    """Okapi BM25 (k1 1.2, b 0.75) over Snowball-stemmed words: the textbook baseline."""

    def __init__(self, texts: list[str]) -> None:
        self.tfs = [Counter(terms(t)) for t in texts]
        self.lens = [sum(tf.values()) for tf in self.tfs]
        self.avg = max(sum(self.lens) / max(len(texts), 1), 1.0)
        self.df = Counter(term for tf in self.tfs for term in tf)
        self.n = len(texts)

    def rank(self, query: str) -> list[int]:
        scores = [0.0] * self.n
        for term in set(terms(query)):
            df = self.df.get(term)
            if not df:
                continue
            idf = math.log(1 + (self.n - df + 0.5) / (df + 0.5))
            for i, tf in enumerate(self.tfs):
                f = tf.get(term, 0)
                if f:
                    norm = 1.2 * (1 - 0.75 + 0.75 * self.lens[i] / self.avg)
                    scores[i] += idf * f * 2.2 / (f + norm)
        return [i for i in sorted(range(self.n), key=lambda i: -scores[i]) if scores[i] > 0]


def _rrf(rankings: list[list[int]], k: int = 60) -> list[int]:
    score: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, i in enumerate(ranking):
            score[i] += 1 / (k + rank + 1)
    return sorted(score, key=lambda i: -score[i])


async def naive_baselines(
    docs: list[EvalDoc], questions: list[Question], embeddings
) -> dict[str, dict[str, bool]]:
    """{method: {question id: all gold snippets in the top 5}} for vector-only, BM25-only and
    plain RRF over RecursiveCharacterTextSplitter(1000, 200) chunks of each user's documents.
    Vector search uses the configured embedder, so the comparison isolates everything else."""
    import numpy as np
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from advocata_chat.extract import extract

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=BASELINE_CHUNK, chunk_overlap=BASELINE_OVERLAP
    )
    chunks: dict[str, list[str]] = defaultdict(list)
    for doc in docs:
        text = extract(doc.path.name, doc.path.read_bytes()).text
        chunks[doc.user] += splitter.split_text(text)
    out: dict[str, dict[str, bool]] = {"vector": {}, "bm25": {}, "rrf": {}}
    for user, texts in chunks.items():
        mine = [q for q in questions if q.user == user and q.snippets]
        if not mine:
            continue
        matrix = np.asarray(await embeddings.aembed_documents(texts), dtype="float32")
        bm25 = _BM25(texts)
        for q in mine:
            sims = matrix @ np.asarray(await embeddings.aembed_query(q.question), dtype="float32")
            by_vector = [int(i) for i in np.argsort(-sims)]
            by_text = bm25.rank(q.question)
            for method, ranking in (
                ("vector", by_vector),
                ("bm25", by_text),
                ("rrf", _rrf([by_vector, by_text])),
            ):
                top = [texts[i] for i in ranking[:BASELINE_K]]
                out[method][q.id] = snippets_in(q.snippets, top)
    return out


# ---------------------------------------------------------------------------------------
# Cross-validation of the tunable figures.


def folds(ids: list[str], k: int, seed: int = 7) -> list[set[str]]:
    shuffled = sorted(ids)
    random.Random(seed).shuffle(shuffled)
    return [set(shuffled[i::k]) for i in range(k)]


def cross_validate(
    ids: list[str],
    grid: list,
    score: Callable[[object, str], float],
    *,
    k: int = 5,
) -> tuple[float, list]:
    """For each fold: pick the grid point with the best mean score on the other folds, and
    score it on the held-out fold. Returns (held-out mean over all questions, picks)."""
    held: list[float] = []
    picks = []
    for fold in folds(ids, k):
        train = [i for i in ids if i not in fold]
        best = max(grid, key=lambda g: (sum(score(g, i) for i in train), -grid.index(g)))
        picks.append(best)
        held += [score(best, i) for i in fold]
    return (round(sum(held) / len(held), 3) if held else float("nan")), picks


async def retrieval_cv(rt, corpus: Corpus, questions: list[Question], *, k: int) -> dict:
    """Fusion weights and rrf_k chosen by 5-fold CV on hit@k (the runtime's own searches)."""
    from advocata_chat.retrieval import candidate_lists, rank_hits

    answerable = [q for q in questions if q.snippets]
    lists = {}
    for q in answerable:
        lists[q.id] = await candidate_lists(
            engine=rt.engine,
            store=rt.store,
            embeddings=rt.embeddings,
            user_id=corpus.user_id(q.user),
            question=q.question,
            params=rt.search,
        )
    by_id = {q.id: q for q in answerable}
    grid = [
        (wv, rk, div)
        for wv in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
        for rk in (10, 30, 60, 100)
        for div in (0.0, 0.7, 0.8, 0.9, 1.0)
    ]
    cache: dict[tuple, float] = {}

    def score(g, qid: str) -> float:
        if (g, qid) not in cache:
            wv, rk, div = g
            params = replace(rt.search, vector_weight=wv, text_weight=1.0, rrf_k=rk, diversify=div)
            hits = rank_hits(lists[qid], params)[:k]
            cache[g, qid] = float(snippets_in(by_id[qid].snippets, (h.content for h in hits)))
        return cache[g, qid]

    held, picks = cross_validate(list(by_id), grid, score)
    ranked = {qid: rank_hits(lists[qid], rt.search) for qid in by_id}
    budgets = context_budgets(ranked, answerable, rt.settings.rag_max_context_tokens, rt.search)
    return {"held_out_hit@k": held, "picks": picks, "hit@context by budget": budgets}


def context_budgets(ranked: dict, questions: list[Question], budget: int, params) -> dict:
    """hit@context if the context held more (or fewer) tokens than RAG_MAX_CONTEXT_TOKENS,
    over the same rankings: nothing here is fitted (more room never loses a passage), it
    shows what the budget costs in found passages. Ranking and packing variants within
    4,000 tokens moved this by 0.01 at most; the budget moved it by 0.08 (docs/quality.md)."""
    from advocata_chat.retrieval import hit_to_document
    from chains.context import pack_sources

    out = {}
    for tokens in sorted({budget // 2, budget, budget * 3 // 2, budget * 2}):
        hits = []
        for q in questions:
            docs = [hit_to_document(h) for h in ranked[q.id][: params.context_k]]
            sources = pack_sources(docs, tokens)["sources"]
            hits.append(snippets_in(q.snippets, (s["content"] for s in sources)))
        out[tokens] = _mean(hits)
    return out


# Abstention is tuned for the most abstention on unanswerable questions that keeps false
# abstention on the training folds within this (issue 12's bound): balanced accuracy picked
# thresholds that refused a quarter of the answerable questions (docs/quality.md).
MAX_FALSE_ABSTENTION = 0.10


def abstention_cv(results: list[QuestionResult], questions: list[Question], embed) -> dict:
    """The offline answerer's abstention threshold chosen by 5-fold CV: the most abstention
    on no_answer questions with false abstention at most MAX_FALSE_ABSTENTION on the
    training folds, over the sources each answer was given."""
    from advocata_chat.extractive import best_score, sentence_similarity

    embed = sentence_similarity(embed)

    by_id = {q.id: q for q in questions}
    scores = {}
    for r in results:
        sources = [(s["n"], s.get("title", ""), s["content"]) for s in r.sources]
        scores[r.id] = best_score(by_id[r.id].question, sources, embed=embed)
    grid = [round(0.1 + 0.005 * i, 3) for i in range(81)]

    def abstains(t: float, qid: str) -> bool:
        return scores[qid] is None or scores[qid] < t

    def objective(t: float, train: list[str]) -> tuple[bool, float]:
        yes = [abstains(t, i) for i in train if by_id[i].answerable]
        no = [abstains(t, i) for i in train if not by_id[i].answerable]
        false = sum(yes) / max(len(yes), 1)
        # Within the bound: the most abstention; else the least false abstention.
        within = false <= MAX_FALSE_ABSTENTION
        return (within, sum(no) / max(len(no), 1) if within else -false)

    held_scores: dict[str, float] = {}
    picks = []
    for fold in folds(list(scores), 5):
        train = [i for i in scores if i not in fold]
        best = max(grid, key=lambda t: objective(t, train))
        picks.append(best)
        for i in fold:
            s = scores[i]
            held_scores[i] = float(s is None or s < best)
    no = [held_scores[i] for i in held_scores if not by_id[i].answerable]
    yes = [held_scores[i] for i in held_scores if by_id[i].answerable]
    return {
        "held_out_abstention_no_answer": _mean(no),
        "held_out_false_abstention": _mean(yes),
        "picks": picks,
    }


def other_document_cv(
    results: list[QuestionResult],
    questions: list[Question],
    corpus: Corpus,
    embed,
    *,
    threshold: float,
) -> dict:
    """How far below the best sentence's score another document's best may be and still be
    quoted (`OFFLINE_OTHER_DOCUMENT`), chosen by 5-fold CV on the mean of "every gold
    document cited" and citation precision, re-answering over each answer's sources."""
    from advocata_chat.extractive import choose, sentence_similarity

    embed = sentence_similarity(embed)  # one cache: each sentence is embedded once
    by_id = {q.id: q for q in questions}
    grid = [-1.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # -1: never quote another document
    cache: dict[tuple, tuple[float, float]] = {}

    def figures(g: float, qid: str) -> tuple[float, float]:
        if (g, qid) not in cache:
            q, r = by_id[qid], results_by_id[qid]
            sources = [(s["n"], s.get("title", ""), s["content"]) for s in r.sources]
            doc_of = {s["n"]: corpus.doc_names.get(s.get("document_id"), "?") for s in r.sources}
            chosen = choose(q.question, sources, embed=embed, threshold=threshold, other_document=g)
            cited = [doc_of[c.n] for c in chosen]
            cache[g, qid] = (
                float(all(d in cited for d in q.gold_docs)),
                sum(d in q.gold_docs for d in cited) / len(cited) if cited else 0.0,
            )
        return cache[g, qid]

    results_by_id = {r.id: r for r in results}
    ids = [r.id for r in results if by_id[r.id].gold_docs]
    held, picks = cross_validate(ids, grid, lambda g, qid: sum(figures(g, qid)) / 2)
    fold_of = {i: n for n, fold in enumerate(folds(ids, 5)) for i in fold}
    held_figures = [figures(picks[fold_of[i]], i) for i in ids]
    return {
        "held_out_gold_docs_cited": _mean(f[0] for f in held_figures),
        "held_out_citation_precision": _mean(f[1] for f in held_figures),
        "picks": picks,
    }


# ---------------------------------------------------------------------------------------


@dataclass
class Report:
    questions: list[Question]
    results: dict[str, list[QuestionResult]]  # prompts label -> results
    baselines: dict[str, dict[str, bool]]
    cv: dict[str, dict]


async def run(
    set_dirs: list[Path],
    settings: Settings,
    *,
    k: int = 5,
    alternative: PromptSet | None = None,
    cross_validation: bool = True,
) -> Report:
    """Runs on a throwaway embedded database unless DATABASE_URL is set. The documents are
    ingested once, so both prompt sets answer the same questions over the same chunks."""
    from advocata_chat.app import create_app

    docs, questions = load_sets(set_dirs)
    with tempfile.TemporaryDirectory(prefix="advocata-eval-") as tmp:
        if not settings.database_url:
            settings = settings.model_copy(update={"advocata_data_dir": Path(tmp)})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://eval", timeout=600
            ) as client:
                corpus = await ingest(client, settings, docs)
                rt = app.state.runtime
                baselines = await naive_baselines(docs, questions, rt.embeddings)
                prompt_sets = {"current": rt.prompts}
                if alternative is not None:
                    prompt_sets["alternative"] = alternative
                results = {}
                for label, prompts in prompt_sets.items():
                    rt.prompts = prompts  # turns read rt.prompts[...] at every turn
                    results[label] = await ask(client, corpus, questions, k=k)
                cv: dict[str, dict] = {}
                if cross_validation:
                    cv["retrieval"] = await retrieval_cv(rt, corpus, questions, k=k)
                    if not settings.uses_openai:
                        cv["abstention"] = abstention_cv(
                            results["current"], questions, rt.embeddings
                        )
                        cv["other document"] = other_document_cv(
                            results["current"],
                            questions,
                            corpus,
                            rt.embeddings,
                            threshold=settings.offline_abstain_threshold,
                        )
    return Report(questions, results, baselines, cv)


def _by_kind(
    results: list[QuestionResult], *, unanswerable: bool
) -> Iterator[tuple[str, list[QuestionResult]]]:
    """The rows of the per-kind tables: ("ALL", every answerable result), then each kind's,
    then no_answer's when asked for; kinds with no result are left out."""
    kinds = sorted({r.kind for r in results if r.kind != "no_answer"})
    for kind in ["ALL", *kinds, *(["no_answer"] if unanswerable else [])]:
        rs = [r for r in results if (kind == "ALL" and r.kind != "no_answer") or r.kind == kind]
        if rs:
            yield kind, rs


def by_kind_table(report: Report, label: str = "current") -> str:
    """One row per kind: the naive baselines' hit@5 beside the system's figures. A system
    hit@k below a baseline's is marked with `<`."""
    head = (
        f"{'kind':<11} {'n':>3}  {'vec@5':>6} {'bm25@5':>6} {'rrf@5':>6} | "
        f"{'hit@k':>6} {'hit@ctx':>7} {'cited':>6} {'prec':>6} {'kw':>6} {'abst':>6}"
    )
    lines = [head, "-" * len(head)]
    for kind, rs in _by_kind(report.results[label], unanswerable=True):
        ids = [r.id for r in rs]
        base = {
            m: _mean(report.baselines[m].get(i) for i in ids) for m in ("vector", "bm25", "rrf")
        }
        hit = _mean(r.snippet_hit for r in rs)
        worse = any(hit < b for b in base.values() if not math.isnan(b))
        cells = [
            f"{base['vector']:>6} {base['bm25']:>6} {base['rrf']:>6}",
            f"{hit:>6}{'<' if worse else ' '}{_mean(r.context_hit for r in rs):>6}",
            f"{_mean(r.docs_cited for r in rs):>6} {_mean(r.citation_precision for r in rs):>6}",
            f"{_mean(r.keyword_recall for r in rs):>6} {_mean(r.abstained for r in rs):>6}",
        ]
        lines.append(f"{kind:<11} {len(rs):>3}  {cells[0]} | {cells[1]} {cells[2]} {cells[3]}")
    return "\n".join(lines)


def won_lost_table(report: Report, label: str = "current") -> str:
    """Per kind, the questions the system's hit@k wins (it finds every gold snippet, the
    baseline does not) and loses against each naive baseline. One question moves a kind by
    0.03-0.07: "+0 -3" is a pattern, "+5 -8" a shuffle, which the means alone hide."""
    names = ("vector", "bm25", "rrf")
    head = f"{'kind':<11} {'n':>3}  " + " ".join(f"{'vs ' + m:>10}" for m in names)
    lines = [head, "-" * len(head)]
    for kind, rs in _by_kind(report.results[label], unanswerable=False):
        cells = []
        for m in names:
            base = report.baselines[m]
            won = sum(1 for r in rs if r.snippet_hit and base.get(r.id) is False)
            lost = sum(1 for r in rs if not r.snippet_hit and base.get(r.id))
            cells.append(f"{f'+{won} -{lost}':>10}")
        lines.append(f"{kind:<11} {len(rs):>3}  " + " ".join(cells))
    return "\n".join(lines)


def print_results(label: str, results: list[QuestionResult]) -> None:
    for r in results:
        print(
            f"[{label}] {r.id} {r.kind:10} hit={r.snippet_hit} ctx={r.context_hit} "
            f"kw={r.keyword_recall} abst={r.abstained} cited={r.cited_docs}"
        )


def side_by_side(figures: dict[str, dict[str, float | int]]) -> str:
    """A plain-text table: one row per metric, one column per prompts folder; rows whose
    figures differ end with `*`."""
    columns = list(figures)
    names = ["metric", *figures[columns[0]]]
    rows = [columns, *([str(figures[c][n]) for c in columns] for n in names[1:])]
    width = max(len(n) for n in names)
    col = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = []
    for i, (name, row) in enumerate(zip(names, rows, strict=True)):
        cells = "  ".join(f"{v:>{w}}" for v, w in zip(row, col, strict=True))
        mark = "  *" if i and len(set(row)) > 1 else ""
        lines.append(f"{name:<{width}}  {cells}{mark}")
    return "\n".join(lines)
