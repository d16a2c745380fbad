"""An honest offline chat model: no weights, no network, streams like any chat model.

It never pretends to reason. Without documents it says plainly that no generative model
is configured. The prompt is what any model sees; the offline model reads the user's
question from the last human message.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from advocata_chat.tokens import count_message_tokens, count_tokens

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
    """Answers without a generative model."""

    model_name: str = OFFLINE_MODEL_NAME

    @property
    def _llm_type(self) -> str:
        return "advocata-offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def answer(self, messages: list[BaseMessage]) -> str:
        question = _last_question(messages)
        short = question if len(question) <= 200 else question[:200] + "…"
        return NO_MODEL_NOTICE.format(question=short)

    def _usage(self, messages: list[BaseMessage], text: str) -> UsageMetadata:
        prompt, completion = count_message_tokens(messages), count_tokens(text)
        return UsageMetadata(
            input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
        )

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
            usage_metadata=self._usage(messages, text),
            response_metadata={"model_name": self.model_name},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunks(self, messages: list[BaseMessage]) -> Iterator[ChatGenerationChunk]:
        text = self.answer(messages)
        for piece in _pieces(text):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        # Usage comes in a trailing chunk, as OpenAI-compatible servers do.
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=self._usage(messages, text),
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
        for chunk in self._chunks(messages):
            if run_manager and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
