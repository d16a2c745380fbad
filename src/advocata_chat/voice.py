"""Voice input: a recorded question becomes text through an OpenAI-compatible speech
recogniser (`/v1/audio/transcriptions`).

Nothing installable here recognises Russian offline (PROBED.md), so without an endpoint the
route answers 503 naming the setting. The recording's format is checked from its bytes and
its length from its packets (PyAV, whose wheel carries FFmpeg's demuxers) before anything
is sent, so a long or broken file costs no provider call.

Over the WebSocket a recording is uploaded first (`store_upload`, checked the same way) and
named by its id in a `voice` frame; the turn that answers it deletes it in the transaction
that stores the user message (`consume`), so each upload is answered at most once.
"""

from __future__ import annotations

import asyncio
import io
import math
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from advocata_chat.config import Settings
from advocata_chat.errors import (
    AppError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
)
from advocata_chat.extract import EmptyDocument, UnreadableFile, UnsupportedFile
from advocata_chat.limits import RateLimited
from advocata_chat.llm import audio_client
from advocata_chat.models import VoiceUpload, utcnow
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


class AudioTooLong(PayloadTooLarge):
    """The recording is longer than `MAX_AUDIO_SECONDS` (or bigger than `MAX_AUDIO_BYTES`)."""

    code = "audio_too_long"
    example = "The recording is 185 s long; the limit is 120 s (MAX_AUDIO_SECONDS)"
    example_detail = {"limit": "MAX_AUDIO_SECONDS", "max": 120, "found": 185.0}


class NoSpeech(InvalidInput):
    """The recogniser heard no words in the recording."""

    code = "no_speech"
    example = "No speech was recognised in the recording"


class VoiceUploadNotFound(NotFound):
    """No recording of the caller's with this id waits in this conversation: it never
    existed, is someone else's, was used already or expired (the same answer for each)."""

    example = "Voice upload not found: upload the recording again (POST .../voice/uploads)"


# What a recording is, from its first bytes (browsers record webm or ogg with Opus).
AUDIO_TYPES = {
    "webm": "audio/webm",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
}


def audio_kind(data: bytes) -> str | None:
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if data.startswith(b"OggS"):
        return "ogg"
    if data.startswith(b"RIFF") and data[8:12] == b"WAVE":
        return "wav"
    if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    if data[4:8] == b"ftyp":
        return "m4a"
    return None


def check_audio(settings: Settings, data: bytes) -> tuple[str, float]:
    """(media type, seconds) of an uploaded recording, or the error that refuses it."""
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
    seconds = _duration(data, settings.max_audio_seconds)
    if seconds > settings.max_audio_seconds:
        raise AudioTooLong(
            f"The recording is longer than {settings.max_audio_seconds:g} s (MAX_AUDIO_SECONDS)",
            detail={"limit": "MAX_AUDIO_SECONDS", "max": settings.max_audio_seconds},
        )
    return AUDIO_TYPES[kind], seconds


def _duration(data: bytes, limit: float) -> float:
    """Seconds of audio, read from the packets' timestamps (a browser's webm recording has
    no duration in its header); stops counting once past `limit`."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise EmptyDocument("The file has no audio")
            stream = container.streams.audio[0]
            base = stream.time_base
            end = 0.0
            for packet in container.demux(stream):
                if packet.pts is None or base is None:
                    continue
                end = max(end, float((packet.pts + (packet.duration or 0)) * base))
                if end > limit:
                    break
            if not end and container.duration:
                end = container.duration / av.time_base
    except av.FFmpegError as exc:
        raise UnreadableFile("The recording could not be read") from exc
    if end <= 0:
        raise EmptyDocument("The recording holds no audio")
    return end


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


async def audio_info(settings: Settings, data: bytes) -> tuple[str, float]:
    """check_audio off the event loop (demuxing a minute of audio takes a few ms)."""
    return await asyncio.to_thread(check_audio, settings, data)


# -- recordings uploaded for the WebSocket -------------------------------------------------


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
        # Expired recordings (anyone's) go first: the table holds only what may still be sent.
        await s.execute(delete(VoiceUpload).where(VoiceUpload.expires_at <= now))
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
