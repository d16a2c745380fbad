"""Retrieval-augmented answer: condense -> retrieve -> pack context -> answer with sources.

Streaming this chain yields the intermediate keys first ("standalone", "docs", "packed")
and then the answer chunk by chunk, which maps onto the `sources` and `token` frames.
"""

from __future__ import annotations

from operator import itemgetter

from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnablePassthrough

from chains.context import build_context_packer


def build_rag_chain(
    *,
    llm: BaseChatModel,
    condense: Runnable,
    retriever: BaseRetriever,
    prompt: ChatPromptTemplate,
    max_context_tokens: int,
) -> Runnable:
    """Input: {"history", "question"}. Output keys: standalone, docs, packed, answer."""
    answer_inputs = {
        "history": itemgetter("history"),
        "question": itemgetter("question"),
        "instructions": lambda x: x.get("instructions") or [],
        "context": lambda x: x["packed"]["context"],
    }
    return (
        RunnablePassthrough.assign(standalone=condense)
        .assign(docs=itemgetter("standalone") | retriever.with_config(run_name="retrieve"))
        .assign(packed=itemgetter("docs") | build_context_packer(max_tokens=max_context_tokens))
        .assign(answer=answer_inputs | prompt | llm.with_config(run_name="answer", tags=["answer"]))
        .with_config(run_name="rag")
    )
