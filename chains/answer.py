"""The answer to a turn, with or without the user's documents, in one output shape.

Streaming it yields a `packed` chunk (`{"sources": [...], "context": ...}`; no sources for
plain chat) before the answer, then the answer chunk by chunk under `answer`, whichever branch
ran: the turn consumes both with one loop.
"""

from __future__ import annotations

from operator import itemgetter

from langchain_core.runnables import Runnable, RunnableBranch, RunnablePassthrough

NO_CONTEXT = {"sources": [], "context": ""}


def build_answer_chain(*, rag: Runnable, chat: Runnable) -> Runnable:
    """Input: {"use_rag", "history", "question", "instructions"}. `rag` is the chain of
    chains/rag.py, `chat` the chain of chains/chat.py. Output keys: packed, answer."""
    plain = (
        RunnablePassthrough.assign(packed=lambda _: NO_CONTEXT)
        .assign(answer=chat)
        .with_config(run_name="plain")
    )
    return RunnableBranch((itemgetter("use_rag"), rag), plain).with_config(run_name="turn")
