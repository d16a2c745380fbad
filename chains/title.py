"""Name a conversation after its first exchange."""

from __future__ import annotations

import re

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda

_FILLER = re.compile(
    r"^(?:(?:здравствуйте|добрый\s+(?:день|вечер)|привет|пожалуйста|подскажите|скажите|"
    r"помогите|прошу|вопрос)[\s,!.:-]*)+",
    re.IGNORECASE,
)


def title_from_question(question: str, max_words: int = 8) -> str:
    """A short title from the question itself, for when no model can write one."""
    text = " ".join(question.split())
    text = _FILLER.sub("", text) or text
    text = re.split(r"(?<=[.!?])\s", text)[0].rstrip(" .?!,;:")
    words = text.split()
    title = " ".join(words[:max_words]) + ("…" if len(words) > max_words else "")
    return title[:1].upper() + title[1:]


def build_title_chain(*, llm: BaseChatModel | None, prompt: ChatPromptTemplate) -> Runnable:
    """Input: {"question", "answer"}. Output: a short title."""
    if llm is None:
        return RunnableLambda(lambda x: title_from_question(x["question"])).with_config(
            run_name="title"
        )
    return (prompt | llm.with_config(tags=["title"]) | StrOutputParser()).with_config(
        run_name="title"
    )
