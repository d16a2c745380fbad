"""Pseudo-relevance feedback for retrieval, cross-validated over the cached candidate lists.

    python -m bench.prf [--cache DIR]

Reads bench.ranker's cache (every answerable question's `candidate_lists` at 20 per
retriever, its query vectors, every chunk's stored e5 vector). From the current ranking's
top m chunks (`rank_hits`, the first round) it builds one more list and fuses it with the
others (weighted RRF, then `diversify`, as `rank_hits` does):

- vector (Rocchio): q' = normalise(q + beta * mean of the top m chunks' vectors), searched
  over the asking user's chunks by exact cosine (standing in for pgvector, k = candidates),
  added as one more list or replacing the question's vector list;
- text (RM3-like): the question's stems plus the top t stems of the top m chunks (by
  tf/length * idf over the user's chunks, the question's stems left out), ranked by an
  in-memory BM25 over the user's chunks (`evaluation._BM25`, an approximation of the
  Postgres BM25 in store.text_search: no prefix matching, Snowball not Postgres stems).

Each family's grid (with "off" first, so ties go to the current ranking) is chosen on four
folds by hit@5 (`evaluation.folds`, the eval's seed) and scored on the fifth.
Not kept (docs/quality.md, "Fifth pass: pseudo-relevance feedback").
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from advocata_chat.config import Settings
from advocata_chat.evaluation import _BM25, folds, snippets_in
from advocata_chat.extractive import terms
from advocata_chat.retrieval import SearchParams, diversify, fuse, rank_hits
from bench.ranker import SETS, hits_of, load, table


def user_of(doc_names: dict[str, str], document_id) -> str:
    """ "<set>:<user>" of a document named "<set>:<user>_<stem>"."""
    set_, stem = doc_names[str(document_id)].split(":", 1)
    return f"{set_}:{stem.split('_')[0]}"


class Corpus:
    """Per user: the chunks (as Hits), their unit vectors and an in-memory BM25."""

    def __init__(self, cases: list, chunks: dict) -> None:
        hits = {h.chunk_id: h for c in cases for ls in c.lists.values() for _, hs in ls for h in hs}
        names = cases[0].doc_names
        self.users: dict[str, tuple[list, np.ndarray, _BM25]] = {}
        by_user: dict[str, list[str]] = {}
        for cid, (did, _, _) in sorted(chunks.items(), key=lambda kv: (str(kv[1][0]), kv[1][1])):
            by_user.setdefault(user_of(names, did), []).append(cid)
        for user, ids in by_user.items():
            base = [
                replace(hits[i], similarity=None, bm25=None, score=0.0, found_by=set()) for i in ids
            ]
            vecs = np.stack([chunks[i][2] for i in ids]).astype(np.float64)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            self.users[user] = (base, vecs, _BM25([h.content for h in base]))
        self.index = {u: {h.chunk_id: j for j, h in enumerate(v[0])} for u, v in self.users.items()}

    def vector(self, user: str, q: np.ndarray, k: int, min_sim: float) -> list:
        base, vecs, _ = self.users[user]
        sims = vecs @ (q / np.linalg.norm(q))
        order = sorted(range(len(base)), key=lambda j: (-sims[j], base[j].chunk_id))[:k]
        return [
            replace(base[j], similarity=float(sims[j]), found_by={"vector"})
            for j in order
            if sims[j] >= min_sim
        ]

    def text(self, user: str, qterms: list[str], k: int) -> list:
        base, _, bm = self.users[user]
        scores = [0.0] * bm.n
        for term in set(qterms):
            df = bm.df.get(term)
            if not df:
                continue
            idf = math.log(1 + (bm.n - df + 0.5) / (df + 0.5))
            for i, tf in enumerate(bm.tfs):
                if f := tf.get(term, 0):
                    norm = 1.2 * (1 - 0.75 + 0.75 * bm.lens[i] / bm.avg)
                    scores[i] += idf * f * 2.2 / (f + norm)
        order = [i for i in sorted(range(bm.n), key=lambda i: -scores[i]) if scores[i] > 0][:k]
        return [replace(base[i], bm25=scores[i], found_by={"text"}) for i in order]

    def expansion(self, user: str, top: list, question: str, t: int) -> list[str]:
        """The top t stems of the feedback chunks by mean tf/length * idf, not the question's."""
        _, _, bm = self.users[user]
        own = set(terms(question))
        weight: Counter = Counter()
        for h in top:
            tf = bm.tfs[self.index[user][h.chunk_id]]
            total = sum(tf.values()) or 1
            for term, f in tf.items():
                if term not in own and len(term) > 2:
                    weight[term] += f / total * math.log(1 + bm.n / bm.df[term]) / len(top)
        return [w for w, _ in sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))[:t]]


def ordered(lists: list[tuple[list, float]], params: SearchParams) -> list:
    fused = fuse(lists, rrf_k=params.rrf_k)
    top = diversify(fused, params.top_k, ratio=params.diversify)
    chosen = {h.chunk_id for h in top}
    return top + [h for h in fused if h.chunk_id not in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/ltr"))
    parser.add_argument("--candidates", type=int, choices=(20, 40), default=20)
    args = parser.parse_args()

    cases, chunks, params = load(args.cache, SETS)
    settings = Settings()
    n = args.candidates
    corpus = Corpus(cases, chunks)
    weight = {"vector": params.vector_weight, "text": params.text_weight}
    by_id = {c.question.id: c for c in cases}
    first = {c.question.id: rank_hits(c.lists[n], params) for c in cases}
    now = {i: hits_of(by_id[i], first[i], settings) for i in by_id}
    table(f"current rank_hits, {n} candidates", cases, now)

    # The exact search stands in for pgvector's: how often it returns the cached list.
    same = sum(
        [h.chunk_id for h in c.lists[n][0][1]]
        == [h.chunk_id for h in corpus.vector(c.question.user, c.qvecs[0], n, -1.0)][
            : len(c.lists[n][0][1])
        ]
        for c in cases
    )
    print(f"exact cosine top-{n} equals the cached pgvector list for {same}/{len(cases)} questions")

    # The ceiling for a new candidate set: questions whose gold is outside the first round's
    # candidates, and how often the feedback chunks (top m) hold a gold snippet.
    union = {i: first[i] for i in by_id}
    outside = [
        i
        for i in by_id
        if not snippets_in(by_id[i].question.snippets, (h.content for h in union[i]))
    ]
    miss = [i for i in by_id if not now[i][0]]
    print(f"hit@5 misses {len(miss)}; gold outside the {n}-per-list candidates: {len(outside)}")
    for m in (1, 2, 3):
        good = sum(
            any(
                snippets_in([s], (h.content for h in first[i][:m]))
                for s in by_id[i].question.snippets
            )
            for i in by_id
        )
        print(f"  a gold snippet among the top {m} (the feedback): {good}/{len(by_id)}")

    def rocchio(i: str, beta: float, m: int, w: float, mode: str) -> list:
        c = by_id[i]
        top = first[i][:m]
        q = c.qvecs[0] / np.linalg.norm(c.qvecs[0])
        fb = np.mean(
            [chunks[h.chunk_id][2] / np.linalg.norm(chunks[h.chunk_id][2]) for h in top], 0
        )
        hits = corpus.vector(c.question.user, q + beta * fb, n, 0.0)
        lists = [(hs, weight[k]) for k, hs in c.lists[n]]
        if mode == "replace":
            lists[0] = (hits, weight["vector"])
        else:
            lists.append((hits, w))
        return ordered(lists, params)

    def rm3(i: str, t: int, m: int, w: float, mode: str) -> list:
        c = by_id[i]
        user = c.question.user
        extra = corpus.expansion(user, first[i][:m], c.question.question, t)
        qterms = terms(c.question.question) + (extra if mode == "q+exp" else [])
        if mode == "exp":
            qterms = extra
        lists = [(hs, weight[k]) for k, hs in c.lists[n]]
        lists.append((corpus.text(user, qterms, n), w))
        return ordered(lists, params)

    add = itertools.product((1, 2, 3), (0.25, 0.5, 1.0), (0.5, 1.0, 1.5))
    add = [(b, m, w, "add") for m, b, w in add]
    swap = [(b, m, 0.0, "replace") for m, b in itertools.product((1, 2, 3), (0.25, 0.5, 1.0))]
    expand = list(itertools.product((1, 2, 3), (3, 5, 10), (0.5, 1.0, 1.5)))
    families = {
        "rocchio, added list": (rocchio, add),
        "rocchio, replacing the question's vector list": (rocchio, swap),
        "rocchio, added or replacing": (rocchio, add + swap),
        "rm3 (in-memory BM25), question + expansion": (
            rm3,
            [(t, m, w, "q+exp") for m, t, w in expand],
        ),
        "rm3 (in-memory BM25), expansion stems alone": (
            rm3,
            [(t, m, w, "exp") for m, t, w in expand],
        ),
    }
    for label, (make, grid) in families.items():
        cross_validate(label, cases, first, make, [None, *grid], settings)


def cross_validate(label, cases, first, make, grid, settings) -> None:
    """Each fold: the grid point (None, the current ranking, first: ties go to it) with the
    best hit@5 on the other four folds, scored on the fifth."""
    by_id = {c.question.id: c for c in cases}
    ids = list(by_id)
    cache: dict = {}

    def got(g, i: str) -> tuple[bool, bool, list]:
        """(hit@5, gold among the candidates, ranking) of question i under grid point g."""
        if (g, i) not in cache:
            order = first[i] if g is None else make(i, *g)
            snips = by_id[i].question.snippets
            cache[g, i] = (
                snippets_in(snips, (h.content for h in order[: settings.rag_top_k])),
                snippets_in(snips, (h.content for h in order)),
                order,
            )
        return cache[g, i]

    held, picks = {}, []
    for fold in folds(ids, 5):
        train = [i for i in ids if i not in fold]
        best = max(grid, key=lambda g: (sum(got(g, i)[0] for i in train), -grid.index(g)))
        picks.append(best)
        held |= {i: hits_of(by_id[i], got(best, i)[2], settings) for i in fold}
    table(f"{label}, held out", cases, held)
    insample = {g: sum(got(g, i)[0] for i in ids) for g in grid}
    best = max(grid, key=lambda g: (insample[g], -grid.index(g)))
    print(f"  picks per fold {picks}; in-sample best {best}: {insample[best] / len(ids):.3f}")
    if best is not None:
        won = sum(got(best, i)[0] and not got(None, i)[0] for i in ids)
        lost = sum(got(None, i)[0] and not got(best, i)[0] for i in ids)
        new = sum(got(best, i)[1] and not got(None, i)[1] for i in ids)
        print(f"  that point on all: hit@5 +{won} -{lost}; gold newly among candidates: {new}")


if __name__ == "__main__":
    main()
