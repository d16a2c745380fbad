"""Model factory and token accounting for one turn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult

from advocata_chat.config import Settings
from advocata_chat.errors import ModelError, ModelUnavailable
from advocata_chat.offline import E5Embeddings, OfflineChatModel, USEEmbeddings
from advocata_chat.tokens import count_message_tokens, count_tokens

if TYPE_CHECKING:
    import openai


def build_chat_model(settings: Settings) -> BaseChatModel:
    """ChatOpenAI when a key or an OpenAI-compatible base URL is set, else the offline model."""
    if not settings.uses_openai:
        return OfflineChatModel()
    from langchain_openai import ChatOpenAI

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"

    def chat(model: str) -> ChatOpenAI:
        return ChatOpenAI(
            model=model,
            api_key=key,
            base_url=settings.openai_base_url,
            temperature=settings.openai_temperature,
            max_tokens=settings.openai_max_tokens,
            # Connect/read timeout per request; the openai client retries with backoff on
            # connection errors, 429 and 5xx, which happen before the first token.
            timeout=settings.openai_timeout_seconds,
            max_retries=settings.openai_max_retries,
            # Without this, ChatOpenAI drops usage when streaming.
            stream_usage=True,
        )

    main = chat(settings.openai_model)
    if settings.openai_fallback_model:
        # Streams from the fallback only if the main model fails before its first chunk.
        return main.with_fallbacks([chat(settings.openai_fallback_model)])
    return main


KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# Cosine floors measured on the Russian dev set: relevant chunks score far below the
# seed's 0.7 with both embedders.
OFFLINE_EMBEDDERS = {"e5": E5Embeddings, "use": USEEmbeddings}
DEFAULT_MIN_SIMILARITY = {USEEmbeddings.model_name: 0.1, E5Embeddings.model_name: 0.0}


def build_embeddings(settings: Settings) -> tuple[Embeddings, str, int]:
    """The embedder, its model name and its dimension."""
    if not settings.uses_openai:
        cls = OFFLINE_EMBEDDERS[settings.offline_embedder]
        return cls(), cls.model_name, cls.dimensions
    from langchain_openai import OpenAIEmbeddings

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    embeddings = OpenAIEmbeddings(
        model=settings.rag_embedding_model,
        api_key=key,
        base_url=settings.openai_base_url,
        # Counting tokens client-side would make tiktoken download an encoding.
        check_embedding_ctx_length=False,
        timeout=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
    )
    dims = settings.rag_embedding_dimensions or KNOWN_DIMENSIONS.get(settings.rag_embedding_model)
    if dims is None:
        dims = len(embeddings.embed_query("probe"))
    return embeddings, settings.rag_embedding_model, dims


def min_similarity(settings: Settings, embedding_model: str) -> float:
    if settings.rag_min_similarity is not None:
        return settings.rag_min_similarity
    return DEFAULT_MIN_SIMILARITY.get(embedding_model, 0.2)


def model_name(llm: BaseChatModel) -> str:
    llm = getattr(llm, "runnable", llm)  # a model with fallbacks: name the main one
    for attr in ("model_name", "model"):
        value = getattr(llm, attr, None)
        if isinstance(value, str) and value:
            return value
    return llm._llm_type


class UsageTracker(AsyncCallbackHandler):
    """Sums the tokens billed over every model call in a turn.

    The provider's reported usage is what counts, so streamed and non-streamed answers are
    accounted the same way. When a real provider reports none (some OpenAI-compatible servers
    ignore `stream_options`), tiktoken estimates it so the quota still holds. With
    `estimate=False` (the offline model, which calls no provider) nothing is estimated: it
    bills 0.
    """

    # Awaited in place: otherwise LangChain wraps every token's callback in its own task,
    # which was the largest per-token cost in bench/fanout.py.
    run_inline = True

    def __init__(self, *, estimate: bool = True) -> None:
        self.estimate = estimate
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.model: str | None = None
        self._prompts: dict[UUID, list[BaseMessage]] = {}

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        self._prompts[run_id] = messages[0] if messages else []

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        prompt = self._prompts.pop(run_id, [])
        gen = (
            response.generations[0][0] if response.generations and response.generations[0] else None
        )
        message = getattr(gen, "message", None)
        usage = getattr(message, "usage_metadata", None)
        meta = getattr(message, "response_metadata", None) or {}
        self.model = meta.get("model_name") or meta.get("model") or self.model
        if usage and usage.get("total_tokens"):
            self.prompt_tokens += usage.get("input_tokens", 0)
            self.completion_tokens += usage.get("output_tokens", 0)
        elif self.estimate:
            self.prompt_tokens += count_message_tokens(prompt)
            self.completion_tokens += count_tokens(gen.text if gen else "")

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # The prompt was sent, so it counts if a partial answer is kept.
        prompt = self._prompts.pop(run_id, [])
        if self.estimate:
            self.prompt_tokens += count_message_tokens(prompt)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@contextlib.asynccontextmanager
async def audio_client(
    settings: Settings, *, base_url: str | None, api_key: str, what: str
) -> AsyncIterator[openai.AsyncOpenAI]:
    """An OpenAI-protocol client for the audio endpoints (speech recognition, synthesis);
    what it raises comes out as our model errors, naming `what` failed."""
    import openai

    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key,
        timeout=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
    )
    try:
        async with client:
            yield client
    except (openai.APIConnectionError, openai.RateLimitError) as exc:
        raise ModelUnavailable(
            f"The {what} could not be reached or is rate limiting; retry later"
        ) from exc
    except openai.APIStatusError as exc:
        raise ModelError(f"The {what} returned an error ({exc.status_code})") from exc
