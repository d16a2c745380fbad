"""Pack retrieved chunks into numbered sources within a token budget."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableLambda

from advocata_chat.citations import NO_SOURCES, format_source
from advocata_chat.tokens import count_tokens, truncate_to_tokens


def _union(kept: Document, doc: Document) -> Document:
    """One passage from two overlapping chunks of a document (spans are exact slices)."""
    a, b = kept.metadata, doc.metadata
    text = kept.page_content
    if b["start"] < a["start"]:
        text = doc.page_content[: a["start"] - b["start"]] + text
    if b["end"] > a["end"]:
        text += doc.page_content[a["end"] - b["start"] :]
    meta = {**a, "start": min(a["start"], b["start"]), "end": max(a["end"], b["end"])}
    return Document(id=kept.id, page_content=text, metadata=meta)


def _touches(kept: Document, doc: Document) -> bool:
    a, b = kept.metadata, doc.metadata
    return (
        a.get("document_id") == b.get("document_id")
        and "start" in a
        and "start" in b
        and b["start"] <= a["end"]
        and b["end"] >= a["start"]
    )


def _cost(n: int, doc: Document) -> int:
    return count_tokens(format_source(n, doc.metadata.get("title", ""), doc.page_content))


def pack_sources(docs: list[Document], max_tokens: int) -> dict:
    """Fill the token budget in rank order and number the sources [1..n].

    Chunks overlap by RAG_CHUNK_OVERLAP characters: a chunk that touches sources already
    kept from its document joins them (one passage, the overlap paid once) and costs only
    what it adds. A chunk that does not fit is skipped and the next ones are tried, so a
    short addition ranked below still gets in. Merging every touching chunk first (before)
    let a run of low-ranked neighbours of the top chunk eat the budget of chunks ranked
    second and third (docs/quality.md).
    """
    kept: list[Document] = []
    used = 0
    for doc in docs:
        touching = [k for k in kept if _touches(k, doc)]
        merged = doc
        if touching:
            # One passage at the place (and with the metadata) of the best-ranked part.
            merged = _union(touching[0], doc)
            for k in touching[1:]:
                merged = _union(merged, k)
        n = len(kept) + 1
        cost = _cost(n, merged) - sum(_cost(n, k) for k in touching)
        if used + cost > max_tokens:
            room = max_tokens - used - _cost(n, Document(page_content=""))
            if kept or room < 50:
                continue
            # Even the best chunk alone is over the budget: it is cut rather than lost.
            merged = Document(
                id=doc.id,
                page_content=truncate_to_tokens(doc.page_content, room),
                metadata=doc.metadata,
            )
            cost = _cost(n, merged)
        if touching:
            kept[next(i for i, k in enumerate(kept) if k is touching[0])] = merged
            kept = [k for k in kept if all(k is not t for t in touching[1:])]
        else:
            kept.append(merged)
        used += cost
    blocks, sources = [], []
    for n, doc in enumerate(kept, 1):
        blocks.append(format_source(n, doc.metadata.get("title", ""), doc.page_content))
        sources.append({"n": n, **doc.metadata, "content": doc.page_content})
    return {"context": "\n\n".join(blocks) or NO_SOURCES, "sources": sources}


def build_context_packer(*, max_tokens: int) -> Runnable:
    """Input: list of retrieved Documents. Output: {"context": str, "sources": [...]}."""
    return RunnableLambda(lambda docs: pack_sources(docs, max_tokens)).with_config(
        run_name="pack_context"
    )
