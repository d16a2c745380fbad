"""Rewrite a follow-up question as a standalone one, using the conversation history."""

from __future__ import annotations

from operator import itemgetter

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableBranch


def build_condense_chain(*, llm: BaseChatModel | None, prompt: ChatPromptTemplate) -> Runnable:
    """Input: {"history", "question"}. Output: the question to search with.

    With no history there is nothing to resolve, so the model is not called. With
    `llm=None` (the offline model cannot rewrite text) the question is used as it is.
    """
    if llm is None:
        return itemgetter("question")
    rewrite = prompt | llm.with_config(tags=["condense"]) | StrOutputParser()
    return RunnableBranch(
        (lambda x: not x.get("history"), itemgetter("question")),
        rewrite,
    ).with_config(run_name="condense")
