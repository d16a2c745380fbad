"""The offline answerer's sentence ranker, cross-validated over the dev sets.

    python -m bench.answerer [--set DIR ...] [--contexts FILE]

Ingests the sets through the API (as `advocata-chat eval` does), keeps the packed context
each question's answer model sees, then, over those contexts:

- fits SENTENCE_WEIGHTS on four folds of the answerable questions (a conditional logit:
  softmax over a question's candidate sentences, the sentences holding a gold snippet as
  positives) and answers the fifth with them, abstention and the second document as
  configured: the held-out figures are the estimate for questions the weights never saw;
- prints the same figures for the shipped weights (fitted on all questions) and for naive
  sentence choices beside them: the first sentence of the best source, the sentence with the
  most shared words, the sentence closest in e5 meaning.

The contexts are saved to --contexts (default: a temporary file) and reused when it exists,
so a second run skips the two-minute ingestion.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pickle
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advocata_chat import extractive
from advocata_chat.citations import cited_numbers
from advocata_chat.config import Settings
from advocata_chat.evaluation import answer_figures, folds, load_sets, normalize

SETS = [Path("../shared/eval/dev"), Path("../shared/eval/dev2")]


@dataclass
class Context:
    question: object  # evaluation.Question
    sources: list[tuple[int, str, str]]  # (n, title, body), as the prompt gives them
    documents: dict[int, str]  # n -> "<set>:<stem>"


@contextlib.asynccontextmanager
async def ingested(set_dirs: list[Path]) -> AsyncIterator[tuple]:
    """The runtime in-process on a throwaway database, with the sets' documents uploaded
    through the API (as `advocata-chat eval` does): (runtime, corpus, questions)."""
    import httpx

    from advocata_chat.app import create_app
    from advocata_chat.evaluation import ingest

    docs, questions = load_sets(set_dirs)
    with tempfile.TemporaryDirectory(prefix="advocata-bench-") as tmp:
        settings = Settings().model_copy(update={"advocata_data_dir": Path(tmp)})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                corpus = await ingest(client, settings, docs)
                yield app.state.runtime, corpus, questions


async def contexts(set_dirs: list[Path]) -> list[Context]:
    """Every question's packed context, through the runtime's own retrieval and packer."""
    from advocata_chat.retrieval import hit_to_document, hybrid_search
    from chains.context import pack_sources

    out = []
    async with ingested(set_dirs) as (rt, corpus, questions):
        for q in questions:
            hits = await hybrid_search(
                engine=rt.engine,
                store=rt.store,
                embeddings=rt.embeddings,
                user_id=corpus.user_id(q.user),
                question=q.question,
                params=rt.search,
                limit=rt.search.context_k,
            )
            packed = pack_sources(
                [hit_to_document(h) for h in hits], rt.settings.rag_max_context_tokens
            )
            srcs = packed["sources"]
            out.append(
                Context(
                    q,
                    [(s["n"], s.get("title", ""), s["content"]) for s in srcs],
                    {s["n"]: corpus.doc_names[s["document_id"]] for s in srcs},
                )
            )
    return out


def labels(ctx: Context, cands: list[extractive.Candidate]) -> np.ndarray:
    """1 for a sentence of a gold document that holds (most of) a gold snippet."""
    q = ctx.question
    out = []
    for c in cands:
        hit = 0
        if ctx.documents[c.n] in q.gold_docs:
            t = normalize(c.text)
            for s in map(normalize, q.snippets):
                words = set(extractive.terms(s))
                shared = words & set(extractive.terms(t))
                inside = s in t or (len(t) > 20 and t.rstrip("…") in s)
                if inside or (words and len(shared) / len(words) >= 0.6):
                    hit = 1
        out.append(hit)
    return np.asarray(out, dtype=float)


def fit(xs: list[np.ndarray], ys: list[np.ndarray], l2: float = 0.01) -> np.ndarray:
    """Conditional logit by gradient descent: per question, a softmax over its candidates;
    the loss is minus the log of the probability mass on its positives."""
    a = np.concatenate(xs)
    y = np.concatenate(ys)
    seg = np.concatenate([np.full(len(x), k) for k, x in enumerate(xs)])
    nq, w = len(xs), np.zeros(a.shape[1])
    for _ in range(3000):
        s = a @ w
        top = np.full(nq, -np.inf)
        np.maximum.at(top, seg, s)
        e = np.exp(s - top[seg])
        p = e / np.bincount(seg, e, nq)[seg]
        ey = e * y
        py = ey / np.bincount(seg, ey, nq)[seg]
        w -= 3.0 * ((p - py) @ a / nq + l2 * w)
    return w


def figures(ctx: Context, answer: str) -> dict:
    """The eval's own scoring of one answer (evaluation.answer_figures), under short keys."""
    q = ctx.question
    cited = [ctx.documents[n] for n in cited_numbers(answer) if n in ctx.documents]
    got = answer_figures(q, answer, cited)
    row = {"kind": q.kind, "abstained": got["abstained"]}
    for key, name in (("kw", "keyword_recall"), ("cited", "docs_cited")):
        if got[name] is not None:
            row[key] = got[name]
    if got["citation_precision"] is not None:
        row["precision"] = got["citation_precision"]
    return row


def report(label: str, rows: list[dict]) -> None:
    def mean(key: str, want) -> float:
        vals = [r[key] for r in rows if want(r) and key in r]
        return sum(vals) / len(vals) if vals else float("nan")

    yes = lambda r: r["kind"] != "no_answer"  # noqa: E731
    kinds = sorted({r["kind"] for r in rows if yes(r)})
    per = " ".join(f"{k}:{mean('kw', lambda r, k=k: r['kind'] == k):.2f}" for k in kinds)
    print(
        f"{label:34} keywords {mean('kw', yes):.3f}  cited {mean('cited', yes):.3f}  "
        f"precision {mean('precision', yes):.3f}  abstained on no_answer "
        f"{mean('abstained', lambda r: not yes(r)):.2f}  falsely "
        f"{mean('abstained', yes):.2f}  | keywords per kind {per}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", type=Path, dest="sets")
    parser.add_argument("--contexts", type=Path, default=Path(tempfile.gettempdir()) / "ctx.pkl")
    args = parser.parse_args()
    if args.contexts.exists():
        ctxs = pickle.loads(args.contexts.read_bytes())
    else:
        ctxs = asyncio.run(contexts(args.sets or SETS))
        args.contexts.write_bytes(pickle.dumps(ctxs))
    settings = Settings()
    from advocata_chat.offline import E5Embeddings, _VectorCache

    embed = extractive.sentence_similarity(E5Embeddings(), cache=_VectorCache(100_000))
    names = list(extractive.SENTENCE_WEIGHTS)
    data = {}
    for ctx in ctxs:
        cands = extractive._candidates(ctx.sources)
        if cands and extractive.terms(ctx.question.question):
            x = np.asarray(
                [
                    [f[k] for k in names]
                    for f in extractive.features(ctx.question.question, cands, embed)
                ]
            )
            data[ctx.question.id] = (cands, x, labels(ctx, cands))

    def answer_all(weights: dict, which: set[str]) -> list[dict]:
        saved = dict(extractive.SENTENCE_WEIGHTS)
        extractive.SENTENCE_WEIGHTS.update(weights)
        try:
            return [
                figures(
                    ctx,
                    extractive.compose(
                        extractive.choose(
                            ctx.question.question,
                            ctx.sources,
                            embed=embed,
                            threshold=settings.offline_abstain_threshold,
                            other_document=settings.offline_other_document,
                        )
                    ),
                )
                for ctx in ctxs
                if ctx.question.id in which
            ]
        finally:
            extractive.SENTENCE_WEIGHTS.clear()
            extractive.SENTENCE_WEIGHTS.update(saved)

    ids = [c.question.id for c in ctxs]
    held: list[dict] = []
    for n, fold in enumerate(folds(ids, 5)):
        train = [i for i in ids if i not in fold and i in data and data[i][2].any()]
        w = fit([data[i][1] for i in train], [data[i][2] for i in train])
        print(f"fold {n + 1} weights", dict(zip(names, w.round(2).tolist(), strict=True)))
        held += answer_all(dict(zip(names, w, strict=True)), fold)
    report("held-out folds (fitted ranker)", held)
    report("shipped weights (all questions)", answer_all({}, set(ids)))

    def naive(pick) -> list[dict]:
        rows = []
        for ctx in ctxs:
            item = data.get(ctx.question.id)
            if item is None:
                rows.append(figures(ctx, extractive.compose([])))
                continue
            cands, x, _ = item
            best = cands[pick(x)]
            rows.append(figures(ctx, extractive.compose([best])))
        return rows

    col = {k: names.index(k) for k in names}
    lead = lambda x: int(np.argmax(x[:, col["rank"]] * 10 + x[:, col["first"]]))  # noqa: E731
    report("naive: first sentence of source 1", naive(lead))
    report("naive: most shared words", naive(lambda x: int(np.argmax(x[:, col["words"]]))))
    report("naive: closest in e5 meaning", naive(lambda x: int(np.argmax(x[:, col["meaning"]]))))


if __name__ == "__main__":
    main()
