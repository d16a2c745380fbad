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


def merge_overlapping(docs: list[Document]) -> list[Document]:
    """Chunks overlap by RAG_CHUNK_OVERLAP characters: when two ranked chunks of one document
    touch, they become one source at the better one's place, so the overlap is not paid twice
    from the token budget and the model reads one passage instead of two halves."""
    kept: list[Document] = []
    for doc in docs:
        m = doc.metadata
        for i, k in enumerate(kept):
            km = k.metadata
            same = km.get("document_id") == m.get("document_id") and "start" in m
            if same and m["start"] <= km["end"] and m["end"] >= km["start"]:
                kept[i] = _union(k, doc)
                break
        else:
            kept.append(doc)
    return kept


def pack_sources(docs: list[Document], max_tokens: int) -> dict:
    """Number the chunks [1..n] in rank order, dropping (or cutting) what does not fit."""
    docs = merge_overlapping(docs)
    blocks: list[str] = []
    sources: list[dict] = []
    budget = max_tokens
    for doc in docs:
        n = len(sources) + 1
        overhead = count_tokens(format_source(n, doc.metadata.get("title", ""), ""))
        room = budget - overhead
        if room < 50:
            break
        body = doc.page_content
        if count_tokens(body) > room:
            body = truncate_to_tokens(body, room)
        budget -= overhead + count_tokens(body)
        blocks.append(format_source(n, doc.metadata.get("title", ""), body))
        sources.append({"n": n, **doc.metadata, "content": body})
    return {"context": "\n\n".join(blocks) or NO_SOURCES, "sources": sources}


def build_context_packer(*, max_tokens: int) -> Runnable:
    """Input: list of retrieved Documents. Output: {"context": str, "sources": [...]}."""
    return RunnableLambda(lambda docs: pack_sources(docs, max_tokens)).with_config(
        run_name="pack_context"
    )
