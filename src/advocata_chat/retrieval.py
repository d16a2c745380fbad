"""Hybrid retrieval over one user's chunks: vector + Russian full-text, fused by RRF.

Every query is filtered by `user_id` in SQL (see store.py). A question that asks two
things ("Кто установил ... и входил ли ...") is also searched part by part, so both
documents it needs can reach the context.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_postgres import PGVectorStore
from pydantic import ConfigDict
from sqlalchemy.ext.asyncio import AsyncEngine

from advocata_chat.store import Hit, text_search, vector_search


@dataclass(frozen=True)
class SearchParams:
    top_k: int = 5
    candidates: int = 20
    # How many ranked chunks the retriever hands to the context packer, which keeps those
    # that fit RAG_MAX_CONTEXT_TOKENS in rank order (a fixed top 5 left most of it unused).
    context_k: int = 30
    min_similarity: float = 0.1
    rrf_k: int = 60
    vector_weight: float = 1.0
    text_weight: float = 1.0
    # The one diversity swap (see diversify) happens when the other document's chunk
    # scores at least this share of the chunk it replaces: 0 always, 1 never. Chosen by
    # cross-validation in `advocata-chat eval` like the weights.
    diversify: float = 0.9


_SPLIT = re.compile(
    r",?\s+(?:и|а также|а|или)\s+(?=\w+\s+ли\b|кто|что|как|когда|где|сколько|"
    r"какой|какая|какое|какие|каков|кому|чей|почему|зачем|куда|откуда)",
    re.IGNORECASE,
)


def sub_questions(question: str) -> list[str]:
    """Split a compound question into its parts ("X и Y?" -> ["X?", "Y?"])."""
    parts = [p.strip(" ,?") for p in _SPLIT.split(question)]
    parts = [p for p in parts if len(p.split()) >= 2]
    return parts if len(parts) > 1 else []


def fuse(ranked_lists: list[tuple[list[Hit], float]], *, rrf_k: int) -> list[Hit]:
    """Weighted reciprocal rank fusion; remembers which retrievers found each chunk."""
    by_id: dict[str, Hit] = {}
    for hits, weight in ranked_lists:
        for rank, hit in enumerate(hits):
            kept = by_id.get(hit.chunk_id)
            if kept is None:
                kept = by_id[hit.chunk_id] = replace(hit, score=0.0, found_by=set(hit.found_by))
            else:
                kept.found_by |= hit.found_by
                kept.similarity = max(
                    (x for x in (kept.similarity, hit.similarity) if x is not None), default=None
                )
                kept.bm25 = max((x for x in (kept.bm25, hit.bm25) if x is not None), default=None)
            kept.score += weight / (rrf_k + rank + 1)
    # Rounded: sums of the same terms in another order differ in the last bits.
    return sorted(by_id.values(), key=lambda h: (-round(h.score, 12), h.reading_order))


def diversify(hits: list[Hit], k: int, keep: list[str] = (), ratio: float = 0.0) -> list[Hit]:
    """Top k, with the chunks in `keep`, and the best chunk of another document when one
    ranks just below the cut and scores at least `ratio` of the chunk it would replace: a
    question that needs two documents otherwise gets k chunks of the first. One swap at
    most, and only a close one: an unconditional swap pushed the right chunk of a
    one-document question out of the top k (docs/quality.md).
    """
    kept = [h for h in hits if h.chunk_id in keep][:k]
    top = kept + [h for h in hits if h.chunk_id not in keep][: k - len(kept)]
    docs = {h.document_id for h in top}
    newcomer = next((h for h in hits[k : 2 * k] if h.document_id not in docs), None)
    if newcomer is not None and len(top) == k:
        counts = {d: sum(1 for t in top if t.document_id == d) for d in docs}
        most = max(counts.values())
        # Replace the weakest chunk of the most represented documents. Between two equally
        # represented ones the choice goes by rank, not by which id a set yields first:
        # ids are new per upload, so that made re-ingestion change answers.
        victim = max(i for i, t in enumerate(top) if counts[t.document_id] == most)
        if most >= 2 and newcomer.score >= ratio * top[victim].score:
            top[victim] = newcomer
    return sorted(top, key=lambda h: -h.score)


Lists = list[tuple[str, list[Hit]]]  # ("vector" | "text", ranked hits), per query


async def candidate_lists(
    *,
    engine: AsyncEngine,
    store: PGVectorStore,
    embeddings: Embeddings,
    user_id: uuid.UUID,
    question: str,
    params: SearchParams,
) -> Lists:
    """Each retriever's ranked candidates, for the question and each part of it."""
    queries = [question, *sub_questions(question)]
    # Queries are embedded as queries: e5 was trained with distinct query/passage prefixes.
    vectors = await asyncio.gather(*(embeddings.aembed_query(q) for q in queries))

    async def one(query: str, vector: list[float]) -> Lists:
        by_vector, by_text = await asyncio.gather(
            vector_search(store, user_id=user_id, vector=vector, k=params.candidates),
            text_search(engine, user_id=user_id, question=query, k=params.candidates),
        )
        by_vector = [h for h in by_vector if (h.similarity or 0) >= params.min_similarity]
        return [("vector", by_vector), ("text", by_text)]

    lists: Lists = []
    for result in await asyncio.gather(*(one(q, v) for q, v in zip(queries, vectors, strict=True))):
        lists += result
    return lists


def rank_hits(lists: Lists, params: SearchParams) -> list[Hit]:
    """Every candidate, best first: weighted RRF, then the diversity step for the top k."""
    weight = {"vector": params.vector_weight, "text": params.text_weight}
    fused = fuse([(hits, weight[kind]) for kind, hits in lists], rrf_k=params.rrf_k)
    top = diversify(fused, params.top_k, ratio=params.diversify)
    chosen = {h.chunk_id for h in top}
    return top + [h for h in fused if h.chunk_id not in chosen]


async def hybrid_search(
    *,
    engine: AsyncEngine,
    store: PGVectorStore,
    embeddings: Embeddings,
    user_id: uuid.UUID,
    question: str,
    params: SearchParams,
    limit: int | None = None,
) -> list[Hit]:
    """The user's best chunks, ranked: the first `top_k` are the search results; the
    context packer fills its token budget from the first `limit` (default: all fused)."""
    lists = await candidate_lists(
        engine=engine,
        store=store,
        embeddings=embeddings,
        user_id=user_id,
        question=question,
        params=params,
    )
    ranked = rank_hits(lists, params)
    return ranked if limit is None else ranked[:limit]


def hit_to_document(hit: Hit) -> Document:
    return Document(
        id=hit.chunk_id,
        page_content=hit.content,
        metadata={
            "chunk_id": hit.chunk_id,
            "document_id": str(hit.document_id),
            "title": hit.title,
            "page": hit.page,
            "start": hit.start,
            "end": hit.end,
            "chunk_index": hit.chunk_index,
            "score": round(hit.score, 6),
            "similarity": None if hit.similarity is None else round(hit.similarity, 4),
            "bm25": None if hit.bm25 is None else round(hit.bm25, 4),
            "found_by": "both" if len(hit.found_by) > 1 else next(iter(hit.found_by), ""),
        },
    )


class UserRetriever(BaseRetriever):
    """A LangChain retriever bound to one user: it cannot see anyone else's chunks."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Any
    store: Any
    embeddings: Any
    user_id: uuid.UUID
    params: SearchParams

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        raise NotImplementedError("UserRetriever is async-only")

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = await hybrid_search(
            engine=self.engine,
            store=self.store,
            embeddings=self.embeddings,
            user_id=self.user_id,
            question=query,
            params=self.params,
            limit=self.params.context_k,
        )
        return [hit_to_document(h) for h in hits]
