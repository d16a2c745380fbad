"""REST routes for images and voice in the chat (issue 16): a message with photos uploaded
with it, a question sent as speech, and a message read aloud."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from sqlalchemy import select

from advocata_chat import attachments, conversations, speech, voice
from advocata_chat.api_documents import UPLOAD, read_upload, upload_file
from advocata_chat.api_turns import TURN, TURN_OK, answer
from advocata_chat.conversations import readable
from advocata_chat.deps import CurrentPrincipal, CurrentUser, RuntimeDep
from advocata_chat.errors import ModelError, ModelUnavailable, PayloadTooLarge, error_responses
from advocata_chat.limits import RateLimited
from advocata_chat.messages import MessageNotFound
from advocata_chat.models import Message
from advocata_chat.responses import AUTH, CONV, CONVERSATION, DB
from advocata_chat.sandbox import ExtractionTimeout
from advocata_chat.schemas import ConversationOut, VoiceUploadOut
from advocata_chat.turns import TurnRequest

router = APIRouter(prefix="/api/v1/chat")
USE_RAG_FORM = "Also search the user's other documents (`true`/`false`)"
SPEECH_OK = {
    200: {
        "description": "The message spoken, in the format asked for",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in speech.MEDIA_TYPES.values()
        },
    }
}


@router.post(
    CONV + "/messages/upload",
    response_model=ConversationOut,
    tags=["chat"],
    summary="Send a message with photos or scans",
    responses={
        **TURN_OK,
        **error_responses(*AUTH, *DB, *CONVERSATION, *UPLOAD, RateLimited, *TURN),
    },
)
async def send_with_files(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    message_content: Annotated[str, Form(description="The question about the files")],
    files: Annotated[
        list[UploadFile],
        File(
            description="Photos or scans (.jpg, .png, .tif, .heic) or documents; each one "
            "is uploaded like `POST /api/v1/documents` and attached to the message"
        ),
    ],
    use_rag: Annotated[bool, Form(description=USE_RAG_FORM)] = True,
):
    """Upload the files as documents (OCR-ed, indexed, counted against
    `RATE_UPLOADS_PER_HOUR` like any upload; the same bytes again reuse the document) and
    send the message with them attached, at most `MAX_ATTACHMENTS`. The answer cites each
    file as a numbered source; with `OPENAI_VISION=true` the model also sees the images.
    With `Accept: text/event-stream` the answer streams as Server-Sent Events.

    The same, for files uploaded before: `POST .../messages` with `attachments: [ids]`."""
    content = conversations.check_message(rt.settings, message_content)
    # A stranger's conversation is a 404 before anything is uploaded in it.
    await conversations.get(
        rt.sessions, user_id=user, conversation_id=conversation_id, include_messages=False
    )
    attachments.check_count(files, limit=rt.settings.max_attachments, field_name="files")
    ids = []
    for file in files:
        # The message is answered from the file's text: wait for its indexing job.
        doc, _ = await upload_file(rt, user, file, wait=True)
        ids.append(doc.id)
    req = TurnRequest.send(
        user_id=user,
        conversation_id=conversation_id,
        content=content,
        use_rag=use_rag,
        attachments=ids,
    )
    return await answer(request, rt, req)


@router.post(
    CONV + "/voice",
    response_model=ConversationOut,
    tags=["voice"],
    summary="Ask a question by voice",
    responses={
        200: TURN_OK[200]
        | {"description": "The conversation with the transcribed question and its answer"},
        **error_responses(
            *AUTH,
            *DB,
            *CONVERSATION,
            PayloadTooLarge,
            voice.AudioTooLong,
            *UPLOAD,
            ExtractionTimeout,
            voice.NoSpeech,
            voice.TranscriptionUnavailable,
            RateLimited,
            *TURN,
        ),
    },
)
async def ask_by_voice(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    rt: RuntimeDep,
    request: Request,
    file: Annotated[
        UploadFile, File(description="The recording: webm or ogg (Opus), wav, mp3 or m4a")
    ],
    use_rag: Annotated[bool, Form(description=USE_RAG_FORM)] = True,
):
    """Transcribe the recording (Russian) with the OpenAI-compatible speech recogniser at
    `STT_BASE_URL` (default: the chat provider's `OPENAI_BASE_URL`) and answer the transcript
    like a typed message. The user message stores `voice`: the transcript, its language and
    the recording's length. At most `MAX_AUDIO_SECONDS` (413 `audio_too_long`); without a
    recogniser, 503 `transcription_unavailable`. With `Accept: text/event-stream` the answer
    streams as Server-Sent Events."""
    await conversations.get(
        rt.sessions, user_id=user, conversation_id=conversation_id, include_messages=False
    )
    voice.endpoint(rt.settings)  # 503 before the upload is read when there is no recogniser
    data = await read_upload(file, rt.settings.max_audio_bytes)
    media_type, seconds = await voice.audio_info(rt, data)
    heard = await voice.hear(rt.settings, data=data, media_type=media_type, seconds=seconds)
    content = conversations.check_message(rt.settings, heard["transcript"])
    req = TurnRequest.send(
        user_id=user, conversation_id=conversation_id, content=content, use_rag=use_rag, voice=heard
    )
    return await answer(request, rt, req)


@router.post(
    CONV + "/voice/uploads",
    status_code=201,
    response_model=VoiceUploadOut,
    tags=["voice"],
    summary="Upload a voice question for the WebSocket",
    responses=error_responses(
        *AUTH,
        *DB,
        *CONVERSATION,
        PayloadTooLarge,
        voice.AudioTooLong,
        *UPLOAD,
        ExtractionTimeout,
        voice.TranscriptionUnavailable,
        RateLimited,
    ),
)
async def upload_voice(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    rt: RuntimeDep,
    file: Annotated[
        UploadFile, File(description="The recording: webm or ogg (Opus), wav, mp3 or m4a")
    ],
):
    """Keep a recording to be asked over the WebSocket: send
    `{"type": "voice", "upload_id": "<id>"}` on this conversation's socket and it is
    transcribed and answered exactly like `POST .../voice` (the turn's frames, the user
    message with its `voice`). Checked as that route checks it (`MAX_AUDIO_SECONDS`,
    `MAX_AUDIO_BYTES`, the formats; 503 `transcription_unavailable` without a recogniser).
    An upload is answered once and only in this conversation; unused, it is gone after
    `VOICE_UPLOAD_TTL_SECONDS`, and at most `MAX_VOICE_UPLOADS` of a user's wait at a time
    (429 `rate_limited`)."""
    await conversations.get(
        rt.sessions, user_id=user, conversation_id=conversation_id, include_messages=False
    )
    voice.endpoint(rt.settings)  # nothing could ever answer the recording
    data = await read_upload(file, rt.settings.max_audio_bytes)
    media_type, seconds = await voice.audio_info(rt, data)
    return await voice.store_upload(
        rt,
        user_id=user,
        conversation_id=conversation_id,
        data=data,
        media_type=media_type,
        seconds=seconds,
    )


@router.get(
    CONV + "/messages/{message_id}/speech",
    tags=["voice"],
    summary="Hear a message read aloud",
    response_class=Response,
    responses={
        **SPEECH_OK,
        **error_responses(
            *AUTH,
            *DB,
            *CONVERSATION,
            MessageNotFound,
            speech.UnknownVoice,
            speech.NothingToSay,
            speech.SpeechUnavailable,
            ModelError,
            ModelUnavailable,
        ),
    },
)
async def message_speech(
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    who: CurrentPrincipal,
    rt: RuntimeDep,
    format: Annotated[speech.Format, Query(description="mp3, ogg (Opus) or wav")] = "mp3",
    voice_name: Annotated[
        str | None,
        Query(
            alias="voice",
            description="The provider's voice (default `TTS_VOICE`), or offline an eSpeak NG "
            "voice (default `ru`)",
        ),
    ] = None,
):
    """The message (usually an answer) spoken in Russian, without its `[n]` markers: by the
    OpenAI-compatible `/v1/audio/speech` at `TTS_BASE_URL` when set, otherwise offline by
    eSpeak NG. Synthesised once per message, voice and format, then served from the cache.
    Lawyers can hear conversations shared with them."""
    async with rt.sessions() as s:
        await readable(s, user_id=who.user_id, conversation_id=conversation_id, lawyer=who.lawyer)
        msg = await s.scalar(
            select(Message).where(
                Message.id == message_id, Message.conversation_id == conversation_id
            )
        )
    if msg is None:
        raise MessageNotFound("Message not found")
    audio = await speech.speak(
        rt, message_id=msg.id, content=msg.content, voice=voice_name, fmt=format
    )
    return Response(
        audio,
        media_type=speech.MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'inline; filename="answer-{msg.id}.{format}"',
            "Cache-Control": "private, max-age=86400",
        },
    )
