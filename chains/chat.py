"""Plain chat: the legal-consultant prompt, the bounded history, and the question."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable


def build_chat_chain(*, llm: BaseChatModel, prompt: ChatPromptTemplate) -> Runnable:
    """Input: {"history": list[BaseMessage], "question": str}. Output: an AI message."""
    return (prompt | llm.with_config(run_name="answer", tags=["answer"])).with_config(
        run_name="chat"
    )
