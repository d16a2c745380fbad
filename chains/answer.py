"""The answer to a turn, with or without the user's documents, in one output shape.

Streaming it yields a `packed` chunk (`{"sources": [...], "context": ...}`; no sources for
plain chat) before the answer, then the answer chunk by chunk under `answer`, whichever branch
ran: the turn consumes both with one loop.

Each branch re-yields plain dicts from a generator. LangChain adds up every streamed chunk
of a runnable for its end-of-run callback when the chunks can be added (`AddableDict`, as
`RunnablePassthrough.assign` yields): through the branch and the assigns that summed the
answer message again at every token, and tripled the cost of a plain token in bench.fanout.
Plain dicts cannot be added, so LangChain stops summing after the first chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from operator import itemgetter

from langchain_core.runnables import Runnable, RunnableBranch, RunnableConfig, RunnableGenerator

NO_CONTEXT = {"sources": [], "context": ""}


def build_answer_chain(*, rag: Runnable, chat: Runnable) -> Runnable:
    """Input: {"use_rag", "history", "question", "instructions"}. `rag` is the chain of
    chains/rag.py, `chat` the chain of chains/chat.py. Output keys: packed, answer."""

    async def with_documents(
        inputs: AsyncIterator[dict], config: RunnableConfig
    ) -> AsyncIterator[dict]:
        async for x in inputs:
            async for chunk in rag.astream(x, config=config):
                for key in ("packed", "answer"):
                    if key in chunk:
                        yield {key: chunk[key]}

    async def plain(inputs: AsyncIterator[dict], config: RunnableConfig) -> AsyncIterator[dict]:
        async for x in inputs:
            yield {"packed": NO_CONTEXT}
            async for chunk in chat.astream(x, config=config):
                yield {"answer": chunk}

    return RunnableBranch(
        (itemgetter("use_rag"), RunnableGenerator(with_documents, name="rag")),
        RunnableGenerator(plain, name="plain"),
    ).with_config(run_name="turn")
