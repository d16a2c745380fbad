"""A learned chunk ranker for retrieval, cross-validated over the dev sets.

    python -m bench.ranker [--set DIR ...] [--cache DIR]

Ingests the sets through the API (as `advocata-chat eval` does) and keeps, for every
answerable question, the runtime's own candidate lists (`retrieval.candidate_lists`, at 20
and 40 per retriever), its query vectors, every chunk's stored vector and the runtime's
search parameters (what the lists are ranked with), pickled in --cache (default /tmp/ltr)
and reused when there, so a second run skips the ingestion. Then:

- the current ranking (`rank_hits`, then `pack_sources` at RAG_MAX_CONTEXT_TOKENS over the
  first `context_k`): hit@5 and hit@context, which must reproduce the eval's;
- a conditional logit over each question's candidates (softmax, the chunks holding a gold
  snippet as positives; `bench.answerer.fit`) on per-candidate features, fitted on four
  folds (`evaluation.folds`, the eval's seed) and scored on the fifth, `diversify` after
  the learned score (its ratio chosen on the training folds): held-out hit@5 and
  hit@context overall and per kind, and the same fitted on all questions;
- with --ascent, instead of the logit, coordinate steps from the fused score alone on the
  weights that raise the training folds' hit@5 itself.

Not kept (docs/quality.md, "Fifth pass: a learned chunk ranker"): every variant is at or
below the current ranking held out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advocata_chat.config import Settings
from advocata_chat.evaluation import folds
from advocata_chat.retrieval import SearchParams
from bench.answerer import ingested

SETS = [Path("../shared/eval/dev"), Path("../shared/eval/dev2")]


@dataclass
class Case:
    question: object  # evaluation.Question
    lists: dict[int, list]  # candidates per retriever -> retrieval.Lists
    qvecs: list[np.ndarray]  # the question's and each sub-question's e5 query vector
    doc_names: dict[str, str]  # document id -> "<set>:<stem>"


async def collect(set_dirs: list[Path]) -> tuple[list[Case], dict, SearchParams]:
    """Every answerable question's candidate lists, through the runtime's own retrieval;
    every chunk's stored vector (chunk id -> (document id, chunk index, vector)); and the
    runtime's search parameters, so the lists are ranked as the runtime ranks them."""
    from dataclasses import replace

    from sqlalchemy import text

    from advocata_chat.retrieval import candidate_lists, sub_questions

    cases, chunks = [], {}
    async with ingested(set_dirs) as (rt, corpus, questions):
        for q in questions:
            if not q.snippets:
                continue
            lists = {}
            for n in (20, 40):
                lists[n] = await candidate_lists(
                    engine=rt.engine,
                    store=rt.store,
                    embeddings=rt.embeddings,
                    user_id=corpus.user_id(q.user),
                    question=q.question,
                    params=replace(rt.search, candidates=n),
                )
            qs = [q.question, *sub_questions(q.question)]
            vecs = [np.asarray(await rt.embeddings.aembed_query(s)) for s in qs]
            cases.append(Case(q, lists, vecs, dict(corpus.doc_names)))
        async with rt.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id, document_id, chunk_index, embedding::text FROM chunks")
            )
            for cid, did, idx, vec in rows:
                chunks[str(cid)] = (did, idx, np.asarray(json.loads(vec), dtype=np.float32))
        search = rt.search
    return cases, chunks, search


def load(cache: Path, set_dirs: list[Path]) -> tuple[list[Case], dict, SearchParams]:
    path = cache / "cases.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    cache.mkdir(parents=True, exist_ok=True)
    got = asyncio.run(collect(set_dirs))
    path.write_bytes(pickle.dumps(got))
    return got


# ---------------------------------------------------------------------------------------
# Features, model, cross-validation.

RRF_K = 10  # the shipped rrf_k: reciprocal ranks on the scale the fusion uses


def candidates(case: Case, n: int, params: SearchParams) -> list:
    """The question's candidates in the current fused order (rank_hits without the swap)."""
    from advocata_chat.retrieval import fuse

    weight = {"vector": params.vector_weight, "text": params.text_weight}
    return fuse([(h, weight[k]) for k, h in case.lists[n]], rrf_k=params.rrf_k)


def features(cands: list, case: Case, n: int, chunks: dict) -> tuple[list[str], np.ndarray]:
    """Per candidate: each list's reciprocal rank, the fused score, e5 similarity (from the
    stored vectors, also for chunks only the text search found) and bm25 within the
    question, found by both, document-level figures, idf-weighted stem coverage, length."""
    from advocata_chat import extractive

    lists = case.lists[n]
    rank = {(i, h.chunk_id): r for i, (_, hits) in enumerate(lists) for r, h in enumerate(hits)}

    def rr(i: int, cid: str) -> float:
        r = rank.get((i, cid))
        return 0.0 if r is None else (RRF_K + 1) / (RRF_K + r + 1)

    sims = np.asarray([float(chunks[h.chunk_id][2] @ case.qvecs[0]) for h in cands])
    bm = {h.chunk_id: h.bm25 or 0.0 for h in lists[1][1]}
    bmax = max(bm.values(), default=1.0) or 1.0
    fused = np.asarray([h.score for h in cands])
    qterms = list(dict.fromkeys(extractive.terms(case.question.question)))
    held = [set(extractive.terms(h.content)) for h in cands]
    df = {t: sum(extractive._holds(t, c) for c in held) for t in qterms}
    idf = {t: np.log((len(cands) + 1) / (df[t] + 0.5)) for t in qterms}
    cover = np.asarray([sum(idf[t] for t in qterms if extractive._holds(t, c)) for c in held]) / (
        sum(idf.values()) or 1.0
    )
    top_vec_doc = lists[0][1][0].document_id if lists[0][1] else None
    docs = [h.document_id for h in cands]
    dcount = {d: docs.count(d) for d in docs}
    dsim = {d: max(s for s, e in zip(sims, docs, strict=True) if e == d) for d in dcount}
    dcover = {d: max(c for c, e in zip(cover, docs, strict=True) if e == d) for d in dcount}
    subs = range(2, len(lists), 2)  # sub-questions' (vector, text) pairs follow the question's
    rows = [
        {
            "fused": fused[j] / fused.max(),
            "rr_vec": rr(0, h.chunk_id),
            "rr_text": rr(1, h.chunk_id),
            "rr_sub_vec": max((rr(i, h.chunk_id) for i in subs), default=0.0),
            "rr_sub_text": max((rr(i + 1, h.chunk_id) for i in subs), default=0.0),
            "sim": sims[j] - sims.max(),
            "sim_rank": 1.0 / (1 + int((sims > sims[j]).sum())),
            "bm25": bm.get(h.chunk_id, 0.0) / bmax,
            "both": float(len(h.found_by) > 1),
            "doc_share": dcount[h.document_id] / len(cands),
            "doc_sim": dsim[h.document_id] - sims.max(),
            "doc_top_vec": float(h.document_id == top_vec_doc),
            "doc_cover": dcover[h.document_id],
            "cover": cover[j],
            "length": min(len(h.content), 1500) / 1000,
        }
        for j, h in enumerate(cands)
    ]
    names = list(rows[0])
    return names, np.asarray([[r[k] for k in names] for r in rows])


def positives(case: Case, cands: list) -> list[np.ndarray]:
    """Per gold snippet, the candidates holding it: a two-document question is two softmax
    terms, one per document's passage, so both are pulled up (hit@5 needs both)."""
    from advocata_chat.evaluation import normalize

    snips = [normalize(s) for s in case.question.snippets]
    return [np.asarray([float(s in normalize(h.content)) for h in cands]) for s in snips]


def ranked(cands: list, scores: np.ndarray, ratio: float, scale: str, top_k: int = 5) -> list:
    """Candidates by learned score, the diversity swap for the top k as rank_hits does.
    The swap compares the newcomer's score with a share of the replaced chunk's: on the
    linear score (clipped at 0) as the fused score is, or on exp(score), the softmax odds."""
    from dataclasses import replace

    from advocata_chat.retrieval import diversify

    vals = np.exp(scores - scores.max()) if scale == "exp" else np.maximum(scores, 0.0)
    hits = sorted(
        (replace(h, score=float(v)) for h, v in zip(cands, vals, strict=True)),
        key=lambda h: (-h.score, h.chunk_id),
    )
    top = diversify(hits, top_k, ratio=ratio)
    chosen = {h.chunk_id for h in top}
    return top + [h for h in hits if h.chunk_id not in chosen]


def hits_of(case: Case, order: list, settings: Settings) -> tuple[bool, bool]:
    """(hit@5, hit@context) as the eval scores them."""
    from advocata_chat.evaluation import snippets_in
    from advocata_chat.retrieval import hit_to_document
    from chains.context import pack_sources

    snips = case.question.snippets
    docs = [hit_to_document(h) for h in order[: settings.rag_context_chunks]]
    srcs = pack_sources(docs, settings.rag_max_context_tokens)["sources"]
    return (
        snippets_in(snips, (h.content for h in order[: settings.rag_top_k])),
        snippets_in(snips, (s["content"] for s in srcs)),
    )


def table(label: str, cases: list[Case], got: dict) -> None:
    def mean(kind: str | None, i: int) -> float:
        v = [got[c.question.id][i] for c in cases if kind in (None, c.question.kind)]
        return sum(v) / len(v)

    kinds = sorted({c.question.kind for c in cases})
    per = "  ".join(f"{k} {mean(k, 0):.2f}/{mean(k, 1):.2f}" for k in kinds)
    print(f"{label:44} hit@5 {mean(None, 0):.3f}  context {mean(None, 1):.3f} | {per}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", type=Path, dest="sets")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ltr"))
    parser.add_argument("--candidates", type=int, choices=(20, 40), default=20)
    parser.add_argument("--drop", default="", help="features left out, comma-separated")
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument(
        "--ascent",
        action="store_true",
        help="instead of the logit: from the fused score alone, coordinate steps on the "
        "other weights that raise the training folds' hit@5 (the metric itself)",
    )
    parser.add_argument("--scale", choices=("linear", "exp"), default="linear")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.7, 0.8, 0.9, 1.0])
    args = parser.parse_args()

    from advocata_chat.evaluation import snippets_in
    from advocata_chat.retrieval import rank_hits
    from bench.answerer import fit

    cases, chunks, params = load(args.cache, args.sets or SETS)
    settings = Settings()
    n = args.candidates
    now = {c.question.id: hits_of(c, rank_hits(c.lists[n], params), settings) for c in cases}
    table(f"current rank_hits, {n} candidates", cases, now)

    data = {}
    for c in cases:
        cands = candidates(c, n, params)
        names, x = features(cands, c, n, chunks)
        keep = [i for i, k in enumerate(names) if k not in args.drop.split(",")]
        data[c.question.id] = (c, cands, x[:, keep], positives(c, cands))
    names = [names[i] for i in keep]

    def train(ids: list[str]) -> tuple[np.ndarray, float]:
        xs = [data[i][2] for i in ids for y in data[i][3] if y.any()]
        ys = [y for i in ids for y in data[i][3] if y.any()]
        w = ascend(ids) if args.ascent else fit(xs, ys, l2=args.l2)
        # The swap's ratio on the training questions, by hit@5 (ties: the earlier ratio).
        at5 = {r: sum(top5(i, order(i, w, r)) for i in ids) for r in args.ratios}
        return w, max(args.ratios, key=lambda r: (at5[r], -args.ratios.index(r)))

    def top5(i: str, hits: list) -> bool:
        return snippets_in(data[i][0].question.snippets, (h.content for h in hits[: params.top_k]))

    def ascend(ids: list[str]) -> np.ndarray:
        w = np.asarray([float(k == "fused") for k in names])
        at5 = lambda w: sum(top5(i, order(i, w, 0.9)) for i in ids)  # noqa: E731
        best, moved = at5(w), True
        while moved:
            moved = False
            for j in range(len(names)):
                for step in (-0.4, -0.2, -0.1, -0.05, 0.05, 0.1, 0.2, 0.4):
                    w2 = w.copy()
                    w2[j] += step
                    if (got := at5(w2)) > best:
                        best, w, moved = got, w2, True
        return w

    def order(i: str, w: np.ndarray, ratio: float) -> list:
        _, cands, x, _ = data[i]
        return ranked(cands, x @ w, ratio, args.scale, settings.rag_top_k)

    ids = list(data)
    held, ws = {}, []
    for fold in folds(ids, 5):
        w, ratio = train([i for i in ids if i not in fold])
        ws.append((w, ratio))
        held |= {i: hits_of(data[i][0], order(i, w, ratio), settings) for i in fold}
    table("learned ranker, held-out folds", cases, held)
    w, ratio = train(ids)
    table(
        "learned ranker, fitted on all (in-sample)",
        cases,
        {i: hits_of(data[i][0], order(i, w, ratio), settings) for i in ids},
    )
    print("swap ratio per fold", [r for _, r in ws], "| mean weights of the folds:")
    print(dict(zip(names, np.mean([w for w, _ in ws], 0).round(2).tolist(), strict=True)))


if __name__ == "__main__":
    # Run the module's own copy, so the cache pickles `bench.ranker.Case`, which bench.prf
    # can load, not `__main__.Case`.
    from bench import ranker

    ranker.main()
