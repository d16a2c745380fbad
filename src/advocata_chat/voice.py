"""Voice input: a recorded question becomes text through an OpenAI-compatible speech
recogniser (`/v1/audio/transcriptions`).

Nothing installable here recognises Russian offline (PROBED.md), so without an endpoint the
route answers 503 naming the setting. The recording's format is checked from its bytes and
its length from its packets (PyAV, whose wheel carries FFmpeg's demuxers) before anything
is sent, so a long or broken file costs no provider call.
"""

from __future__ import annotations

import asyncio
import io
import uuid

from advocata_chat.config import Settings
from advocata_chat.errors import (
    AppError,
    InvalidInput,
    PayloadTooLarge,
)
from advocata_chat.extract import EmptyDocument, UnreadableFile, UnsupportedFile
from advocata_chat.llm import audio_client


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


async def audio_info(settings: Settings, data: bytes) -> tuple[str, float]:
    """check_audio off the event loop (demuxing a minute of audio takes a few ms)."""
    return await asyncio.to_thread(check_audio, settings, data)
