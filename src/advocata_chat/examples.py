"""Request and response examples for the OpenAPI document, after the seed contract's own
(the ДТП consultation of chat_module_README.ru.md), with the fields this service adds.

The seed's ids that are not valid UUIDs ("770fa622-g4bd-…") are replaced by valid ones.
"""

from __future__ import annotations

import json

USER_ID = "123e4567-e89b-12d3-a456-426614174000"
CONVERSATION_ID = "550e8400-e29b-41d4-a716-446655440000"
FIRST_ID = "660f9511-f3ac-52e5-b827-557766551111"
QUESTION_ID = "770fa622-a4bd-43f6-8938-668877662222"
ANSWER_ID = "880fb733-b5ce-44a7-9049-779988773333"
DOCUMENT_ID = "a00c316a-baa3-4ec8-b395-7d3f55f10373"
CHUNK_ID = "54b4190f-d25d-5e43-a1d1-4e578561839d"
LAWYER_ID = "9b2d6f0e-3c1a-4e8b-9f7d-2a6c5e4b3d21"

QUOTE = "Ущерб автомобилю потерпевшего оценён в 184 500 рублей."
DOCUMENT_TEXT = (
    "Извещение о ДТП от 12 марта 2025 года. Виновник ДТП — водитель автомобиля Lada Granta, "
    f"полис ОСАГО у него отсутствует. {QUOTE} Страховая компания «Надёжная» отказала в прямом "
    "возмещении убытков письмом от 20 марта 2025 года."
)
ANSWER = (
    "Да, вы можете получить компенсацию. На основании ваших документов: "
    f"«{QUOTE}» [1] Без полиса ОСАГО у виновника возмещение взыскивается с него "
    "напрямую, в претензионном, а затем в судебном порядке."
)

CITATION = {
    "n": 1,
    "document_id": DOCUMENT_ID,
    "chunk_id": CHUNK_ID,
    "title": "Извещение о ДТП",
    "page": 1,
    "start": 0,
    "end": 271,
    "quote": QUOTE,
    "quote_start": 119,
    "quote_end": 173,
}
GENERATION = {
    "prompts": {
        "system": "c6f1d682f77fa10e",
        "condense": "12e9ba9426243c10",
        "answer": "ce5ff420ca6b7b42",
    },
    "model": "gpt-4o-mini",
    "template_id": "dtp_osago",
    "custom_instructions": False,
    "retrieval": {
        "embedding_model": "text-embedding-3-small",
        "top_k": 5,
        "candidates": 20,
        "min_similarity": 0.3,
        "rrf_k": 60,
        "vector_weight": 1.0,
        "text_weight": 1.0,
    },
}


def _message(id_: str, role: str, content: str, created_at: str, **extra) -> dict:
    return {
        "id": id_,
        "conversation_id": CONVERSATION_ID,
        "role": role,
        "content": content,
        "token_count": None,
        "referenced_documents": [],
        "citations": [],
        "status": "complete",
        "generation": {},
        "superseded_at": None,
        "replaces_id": None,
        "attachments": [],
        "voice": None,
        "created_at": created_at,
        **extra,
    }


FIRST_MESSAGE = _message(
    FIRST_ID, "user", "Помогите разобраться в вопросе по ДТП", "2024-11-14T16:00:00Z"
)
QUESTION = _message(
    QUESTION_ID,
    "user",
    "Могу ли я получить компенсацию если виновник без ОСАГО?",
    "2024-11-14T16:01:00Z",
)
ANSWER_MESSAGE = _message(
    ANSWER_ID,
    "assistant",
    ANSWER,
    "2024-11-14T16:01:05Z",
    token_count=1250,
    referenced_documents=[DOCUMENT_ID],
    citations=[CITATION],
    generation=GENERATION,
)

_CONVERSATION = {
    "id": CONVERSATION_ID,
    "user_id": USER_ID,
    "title": "Консультация по ДТП",
    "status": "active",
    "template_id": None,
    "instructions": None,
    "created_at": "2024-11-14T16:00:00Z",
}
# Seed §1: a conversation started with `initial_message` (not answered yet).
CONVERSATION_CREATED = {
    **_CONVERSATION,
    "total_tokens": 0,
    "messages_count": 1,
    "updated_at": "2024-11-14T16:00:00Z",
    "last_message_at": "2024-11-14T16:00:00Z",
    "messages": [FIRST_MESSAGE],
}
# Seed §2: after a message and its answer.
CONVERSATION = {
    **_CONVERSATION,
    "total_tokens": 1250,
    "messages_count": 3,
    "updated_at": "2024-11-14T16:01:05Z",
    "last_message_at": "2024-11-14T16:01:05Z",
    "messages": [FIRST_MESSAGE, QUESTION, ANSWER_MESSAGE],
}
CONVERSATION_SUMMARY = {key: value for key, value in CONVERSATION.items() if key != "messages"} | {
    "last_message_preview": "Да, вы можете получить компенсацию…"
}
CONVERSATION_PAGE = {
    "items": [CONVERSATION_SUMMARY],
    "total": 15,
    "limit": 50,
    "offset": 0,
    "has_more": False,
}

DOCUMENT = {
    "id": DOCUMENT_ID,
    "user_id": USER_ID,
    "title": "Извещение о ДТП",
    "filename": "izveshchenie-o-dtp.pdf",
    "media_type": "application/pdf",
    "size_bytes": 48213,
    "sha256": "9f2c4e0b7a1d3c5e8f6a2b4d6c8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e",
    "status": "ready",
    "error": None,
    "chunk_count": 3,
    "page_count": 2,
    "ocr_confidence": None,
    "created_at": "2024-11-14T15:58:00Z",
    "updated_at": "2024-11-14T15:58:04Z",
}
SOURCE = {
    "chunk_id": CHUNK_ID,
    "document_id": DOCUMENT_ID,
    "title": "Извещение о ДТП",
    "content": DOCUMENT_TEXT,
    "score": 0.0328,
    "similarity": 0.62,
    "bm25": 0.58,
    "found_by": "both",
    "start": 0,
    "end": 271,
    "page": 1,
}

# The frames of one turn as `POST .../messages` with `Accept: text/event-stream` sends them
# (messages and sources shortened).
_FRAMES = [
    {
        "type": "message_received",
        "message": {"id": QUESTION_ID, "role": "user", "content": QUESTION["content"]},
        "answer_id": ANSWER_ID,
    },
    {
        "type": "sources",
        "sources": [{"n": 1, "title": "Извещение о ДТП", "page": 1, "found_by": "both"}],
    },
    {"type": "token", "delta": "Да, ", "offset": 0},
    {"type": "token", "delta": "вы можете получить компенсацию.", "offset": 4},
    {
        "type": "message",
        "message": {"id": ANSWER_ID, "role": "assistant", "token_count": 1250},
        "conversation": {"total_tokens": 1250, "messages_count": 3},
    },
]


def _sse_id(f: dict) -> str:
    # Token events carry `<answer id>:<offset reached>`, for resuming (GET .../stream).
    return f"id: {ANSWER_ID}:{f['offset'] + len(f['delta'])}\n" if f["type"] == "token" else ""


def _sse(frames: list[dict]) -> str:
    return "".join(
        f"{_sse_id(f)}event: {f['type']}\n"
        f"data: {json.dumps(f, ensure_ascii=False, separators=(',', ':'))}\n\n"
        for f in frames
    )


SSE = _sse(_FRAMES)
# `GET .../stream` with `Last-Event-ID: <answer id>:4`: the rest of the answer, then `message`.
SSE_RESUMED = _sse(_FRAMES[3:])

EXPORT_MD = (
    "# Консультация по ДТП\n\n"
    "Начата: 14.11.2024 16:00 UTC; последнее сообщение: 14.11.2024 16:01 UTC\n\n"
    "## Вы — 14.11.2024 16:01 UTC\n\nМогу ли я получить компенсацию если виновник без ОСАГО?\n\n"
    f"## Ассистент Advocata — 14.11.2024 16:01 UTC\n\n{ANSWER}\n\n"
    f"**Источники:**\n\n- [1] Извещение о ДТП, стр. 1: «{QUOTE}»\n"
)

TOKEN_STATS = {
    "user_id": USER_ID,
    "total_tokens": 12500,
    "total_conversations": 15,
    "active_conversations": 12,
    "archived_conversations": 2,
    "deleted_conversations": 1,
    "quota": {"limit": 2000000, "used": 3400, "period_seconds": 86400},
}
# prompts/templates/dtp_osago.yaml, shortened.
TEMPLATE = {
    "id": "dtp_osago",
    "title": "ДТП и ОСАГО",
    "description": "Дорожно-транспортное происшествие, оформление, выплата по ОСАГО.",
    "system_addition": "Пользователь попал в ДТП. Выясни, как оформлено происшествие "
    "(европротокол или ГИБДД), кто виновник, есть ли у сторон полисы ОСАГО…",
    "suggested_questions": [
        "Что делать сразу после ДТП?",
        "Могу ли я получить компенсацию, если у виновника нет ОСАГО?",
    ],
    "facts_to_collect": ["дата и место ДТП", "кто признан виновником"],
}
FEEDBACK = {
    "message_id": ANSWER_ID,
    "rating": "up",
    "comment": "Понятно и со ссылкой на документ",
    "created_at": "2024-11-14T16:02:00Z",
    "updated_at": "2024-11-14T16:02:00Z",
}
FEEDBACK_SUMMARY = {
    "scope": "mine",
    "up": 3,
    "down": 1,
    "by_prompt_version": [
        {"answer_prompt": "ce5ff420ca6b7b42", "model": "gpt-4o-mini", "up": 3, "down": 1}
    ],
}
PROMPTS = {
    "live_reload": True,
    "model": "offline-extractive",
    "prompts": [
        {
            "name": "answer",
            "sha256": "ce5ff420ca6b7b4235f90697f7d3ce9439ef7c77042654775cd3163dc617e5d0",
            "description": "Ответ на вопрос по найденным фрагментам документов, со ссылками [n].",
            "variables": ["context", "history", "instructions", "question"],
            "loaded_at": "2024-11-14T15:00:00Z",
            "error": None,
        }
    ],
}

# Issue 16: a photo attached to a message, and a question sent as speech.
ATTACHMENT = {
    "document_id": DOCUMENT_ID,
    "title": "Чек из автосервиса",
    "filename": "chek.jpg",
    "media_type": "image/jpeg",
    "page_count": 1,
    "ocr_confidence": 0.91,
}
VOICE_UPLOAD = {
    "id": "b11d427b-cfe6-4d5a-a1e2-3f4a5b6c7d8e",
    "conversation_id": CONVERSATION_ID,
    "media_type": "audio/webm",
    "duration_seconds": 2.4,
    "size_bytes": 38211,
    "created_at": "2024-01-15T10:35:00Z",
    "expires_at": "2024-01-15T10:45:00Z",
}
VOICE = {
    "transcript": "Какая сумма указана в чеке?",
    "language": "russian",
    "duration_seconds": 2.4,
    "media_type": "audio/webm",
    "model": "whisper-1",
}
