"""Pack retrieved chunks into numbered sources within a token budget."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableLambda

from advocata_chat.citations import NO_SOURCES, format_source
from advocata_chat.tokens import count_tokens, truncate_to_tokens


def pack_sources(docs: list[Document], max_tokens: int) -> dict:
    """Number the chunks [1..n] in rank order, dropping (or cutting) what does not fit."""
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
