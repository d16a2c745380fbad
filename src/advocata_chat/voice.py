"""Voice input: a recorded question becomes text through an OpenAI-compatible speech
recogniser (`/v1/audio/transcriptions`).

Nothing installable here recognises Russian offline (PROBED.md), so without an endpoint the
route answers 503 naming the setting. The recording's format is checked from its bytes and
its length from its packets (PyAV, whose wheel carries FFmpeg's demuxers) before anything
is sent, so a long or broken file costs no provider call.

Over the WebSocket a recording is uploaded first (`store_upload`, checked the same way) and
named by its id in a `voice` frame; the turn that answers it deletes it in the transaction
that stores the user message (`consume`), so each upload is answered at most once. One
nobody sends is deleted once it expires, by the next upload or the ingestion worker's next
round (`delete_expired`), so a recording is not kept past VOICE_UPLOAD_TTL_SECONDS plus
INGEST_HEARTBEAT_SECONDS.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from advocata_chat.audio import AUDIO_TYPES, AudioTooLong, audio_kind
from advocata_chat.config import Settings
from advocata_chat.errors import AppError, InvalidInput, NotFound
from advocata_chat.extract import EmptyDocument, UnsupportedFile
from advocata_chat.limits import RateLimited
from advocata_chat.llm import audio_client
from advocata_chat.models import VoiceUpload, utcnow

if TYPE_CHECKING:  # runtime -> jobs -> voice: the worker sweeps expired recordings
    from advocata_chat.runtime import Runtime


class TranscriptionUnavailable(AppError):
    """No speech recogniser is configured: set `STT_BASE_URL` (or `OPENAI_BASE_URL`) to a
    server with the OpenAI `/v1/audio/transcriptions` endpoint."""

    status_code = 503
    code = "transcription_unavailable"
    example = (
        "Voice messages need a speech recogniser: set STT_BASE_URL (or OPENAI_BASE_URL) to an "
        "OpenAI-compatible server with /v1/audio/transcriptions"
    )


class NoSpeech(InvalidInput):
    """The recogniser heard no words in the recording."""

    code = "no_speech"
    example = "No speech was recognised in the recording"


class VoiceUploadNotFound(NotFound):
    """No recording of the caller's with this id waits in this conversation: it never
    existed, is someone else's, was used already or expired (the same answer for each)."""

    example = "Voice upload not found: upload the recording again (POST .../voice/uploads)"


def audio_type(settings: Settings, data: bytes) -> str:
    """The recording's media type from its first bytes, or the error that refuses it (size
    and format: nothing here parses the file)."""
    if not data:
        raise EmptyDocument("The recording is empty")
    if len(data) > settings.max_audio_bytes:
        raise AudioTooLong(
            f"The recording is over the {settings.max_audio_bytes}-byte limit (MAX_AUDIO_BYTES)",
            detail={"limit": "MAX_AUDIO_BYTES", "max": settings.max_audio_bytes},
        )
    kind = audio_kind(data)
    if kind is None:
        raise UnsupportedFile(
            "Send the recording as webm, ogg/opus, wav, mp3 or m4a",
            detail={"supported": sorted(AUDIO_TYPES)},
        )
    return AUDIO_TYPES[kind]


def check_length(settings: Settings, seconds: float) -> float:
    if seconds > settings.max_audio_seconds:
        raise AudioTooLong(
            f"The recording is longer than {settings.max_audio_seconds:g} s (MAX_AUDIO_SECONDS)",
            detail={"limit": "MAX_AUDIO_SECONDS", "max": settings.max_audio_seconds},
        )
    return seconds


async def audio_info(rt: Runtime, data: bytes) -> tuple[str, float]:
    """(media type, seconds) of an uploaded recording, or the error that refuses it. FFmpeg
    reads it in the extraction sandbox: a hostile file costs a child process, killed on time
    or memory, never the API process."""
    media_type = audio_type(rt.settings, data)
    seconds = await rt.extractor.audio_seconds(data, rt.settings.max_audio_seconds)
    return media_type, check_length(rt.settings, seconds)


def endpoint(settings: Settings) -> tuple[str | None, str]:
    """(base URL, key) of the speech recogniser; None as the URL means OpenAI itself."""
    key = settings.stt_api_key or settings.openai_api_key
    base = settings.stt_base_url or settings.openai_base_url
    if base is None and key is None:
        raise TranscriptionUnavailable(TranscriptionUnavailable.example)
    # Self-hosted servers need no key; the client insists on one.
    return base, key.get_secret_value() if key else "not-needed"


async def transcribe(settings: Settings, *, data: bytes, media_type: str) -> dict:
    """The transcript, language and duration, as the message stores them (`voice`)."""
    base, key = endpoint(settings)
    name = (
        f"voice-{uuid.uuid4().hex[:8]}.{next(k for k, v in AUDIO_TYPES.items() if v == media_type)}"
    )
    async with audio_client(settings, base_url=base, api_key=key, what="speech recogniser") as c:
        result = await c.audio.transcriptions.create(
            model=settings.stt_model,
            file=(name, data, media_type),
            language=settings.stt_language,
            response_format="verbose_json",
        )
    text = (getattr(result, "text", "") or "").replace("\x00", "").strip()
    if not text:
        raise NoSpeech("No speech was recognised in the recording")
    return {
        "transcript": text,
        "language": getattr(result, "language", None),
        "duration_seconds": getattr(result, "duration", None),
        "media_type": media_type,
        "model": settings.stt_model,
    }


async def hear(settings: Settings, *, data: bytes, media_type: str, seconds: float) -> dict:
    """What a voice message stores: the transcript, and the recording's length as measured
    here when the recogniser reports none."""
    heard = await transcribe(settings, data=data, media_type=media_type)
    heard["duration_seconds"] = heard["duration_seconds"] or round(seconds, 2)
    return heard


# -- recordings uploaded for the WebSocket -------------------------------------------------


async def delete_expired(s: AsyncSession) -> None:
    """Drop every expired recording (anyone's): the table holds only what may still be sent."""
    await s.execute(delete(VoiceUpload).where(VoiceUpload.expires_at <= utcnow()))


async def store_upload(
    rt: Runtime,
    *,
    user_id: uuid.UUID,
    conversation_id: uuid.UUID,
    data: bytes,
    media_type: str,
    seconds: float,
) -> VoiceUpload:
    """Keep a checked recording for a `voice` frame, for VOICE_UPLOAD_TTL_SECONDS; at most
    MAX_VOICE_UPLOADS of a user's wait at a time (429 with Retry-After: when the oldest
    expires)."""
    settings, now = rt.settings, utcnow()
    async with rt.sessions.begin() as s:
        await delete_expired(s)
        waiting, oldest = (
            await s.execute(
                select(func.count(), func.min(VoiceUpload.expires_at)).where(
                    VoiceUpload.user_id == user_id
                )
            )
        ).one()
        limit = settings.max_voice_uploads
        if limit and waiting >= limit:
            retry = max(1, math.ceil((oldest - now).total_seconds()))
            raise RateLimited(
                f"{waiting} recordings are waiting to be sent; the limit is {limit} "
                "(MAX_VOICE_UPLOADS): send or let one expire first",
                detail={"limit": limit, "setting": "MAX_VOICE_UPLOADS", "retry_after": retry},
                headers={"Retry-After": str(retry)},
            )
        upload = VoiceUpload(
            user_id=user_id,
            conversation_id=conversation_id,
            media_type=media_type,
            duration_seconds=round(seconds, 2),
            size_bytes=len(data),
            data=data,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.voice_upload_ttl_seconds),
        )
        s.add(upload)
    return upload


async def load_upload(
    rt: Runtime, *, user_id: uuid.UUID, conversation_id: uuid.UUID, upload_id: uuid.UUID
) -> VoiceUpload:
    """The caller's recording waiting in this conversation, with its bytes."""
    async with rt.sessions() as s:
        upload = await s.scalar(
            select(VoiceUpload)
            .where(
                VoiceUpload.id == upload_id,
                VoiceUpload.user_id == user_id,
                VoiceUpload.conversation_id == conversation_id,
                VoiceUpload.expires_at > utcnow(),
            )
            .options(undefer(VoiceUpload.data))
        )
    if upload is None:
        raise VoiceUploadNotFound(VoiceUploadNotFound.example)
    return upload


async def consume(s: AsyncSession, *, user_id: uuid.UUID, upload_id: uuid.UUID) -> None:
    """Inside the transaction that stores the voice message: the recording is used up. If
    it is gone already (the same id sent twice), the message is not stored a second time."""
    used = await s.scalar(
        delete(VoiceUpload)
        .where(VoiceUpload.id == upload_id, VoiceUpload.user_id == user_id)
        .returning(VoiceUpload.id)
    )
    if used is None:
        raise VoiceUploadNotFound(VoiceUploadNotFound.example)
