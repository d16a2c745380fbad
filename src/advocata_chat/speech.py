"""Voice output: a message read aloud, as mp3, ogg (Opus) or wav.

With `TTS_BASE_URL`, an OpenAI-compatible `/v1/audio/speech` speaks it; otherwise eSpeak NG
does, offline, with its Russian voice (the `espeakng-loader` wheel ships the library and its
data, so a fresh machine needs nothing from apt). eSpeak gives 16-bit PCM; PyAV (FFmpeg in
its wheel) encodes it to mp3 (LAME) or ogg (Opus). What is spoken is the answer without its
`[n]` markers; the offline answerer's long disclaimer is said in one short sentence. Each
message is synthesised once per voice and format (`speech_cache`); the cache holds at most
`SPEECH_CACHE_MAX_BYTES`, the least recently heard answers going first (an evicted answer is
simply synthesised again when asked for).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import io
import re
import threading
import uuid
import wave
from typing import Literal

from sqlalchemy import text, update

from advocata_chat.config import Settings
from advocata_chat.errors import AppError, InvalidInput
from advocata_chat.extractive import DISCLAIMER as EXTRACTIVE_DISCLAIMER
from advocata_chat.llm import audio_client
from advocata_chat.models import SpeechCache, utcnow
from advocata_chat.runtime import Runtime

Format = Literal["mp3", "ogg", "wav"]
MEDIA_TYPES = {"mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav"}
OFFLINE_VOICE = "ru"
SPOKEN_DISCLAIMER = "Это выдержки из ваших документов. Для важных решений обратитесь к юристу."
_CITE = re.compile(r"\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")
_MARKUP = re.compile(r"[*_#>`|]+")
_VOICE_NAME = re.compile(r"^[A-Za-z0-9_+\-]{1,40}$")


class SpeechUnavailable(AppError):
    """The speech synthesiser could not be loaded (the `espeakng-loader` package or its
    voice data is missing), or the format cannot be produced here."""

    status_code = 503
    code = "speech_unavailable"
    example = "Offline speech needs the espeakng-loader package: pip install espeakng-loader"


class UnknownVoice(InvalidInput):
    """The `voice` is not one the synthesiser has."""

    code = "unknown_voice"
    example = "Unknown voice 'xx'; offline voices are eSpeak NG's, e.g. ru or ru+f3"


class NothingToSay(InvalidInput):
    """The message has no text to speak."""

    code = "nothing_to_say"
    example = "This message has no text to speak"


def spoken_text(content: str, *, limit: int) -> str:
    """What is read aloud: no citation markers or markup; the offline disclaimer said short;
    at most `limit` characters, cut at the end of a sentence."""
    text = content
    disclaimer = EXTRACTIVE_DISCLAIMER in text
    text = text.replace(EXTRACTIVE_DISCLAIMER, " ")
    text = _CITE.sub("", text)
    text = _MARKUP.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        cut = max(text.rfind(c, 0, limit) for c in ".!?…")
        text = text[: cut + 1] if cut > limit // 2 else text[:limit]
    if disclaimer:
        text = f"{text} {SPOKEN_DISCLAIMER}".strip()
    return text


def voice_key(settings: Settings, voice: str | None) -> tuple[str, str]:
    """(the voice to use, the cache's name for it, which includes the engine)."""
    if voice is not None and not _VOICE_NAME.match(voice):
        raise UnknownVoice(f"Unknown voice {voice!r}")
    if settings.tts_base_url:
        voice = voice or settings.tts_voice
        return voice, f"{settings.tts_model}:{voice}"
    voice = voice or OFFLINE_VOICE
    return voice, f"espeak:{voice}"


async def speak(
    rt: Runtime, *, message_id: uuid.UUID, content: str, voice: str | None, fmt: Format
) -> bytes:
    """The message spoken, from the cache or synthesised (and cached)."""
    settings = rt.settings
    voice, key = voice_key(settings, voice)
    async with rt.sessions.begin() as s:
        # A hit is heard again: it moves to the back of the eviction queue.
        cached = await s.scalar(
            update(SpeechCache)
            .where(
                SpeechCache.message_id == message_id,
                SpeechCache.voice == key,
                SpeechCache.format == fmt,
            )
            .values(used_at=utcnow())
            .returning(SpeechCache.data)
        )
    if cached is not None:
        return cached
    text = spoken_text(content, limit=settings.max_speech_chars)
    if not text:
        raise NothingToSay("This message has no text to speak")
    if settings.tts_base_url:
        audio = await _provider(settings, text=text, voice=voice, fmt=fmt)
    else:
        audio = await asyncio.to_thread(offline, text, voice=voice, fmt=fmt)
    now = utcnow()
    async with rt.sessions.begin() as s:
        await s.merge(
            SpeechCache(
                message_id=message_id,
                voice=key,
                format=fmt,
                media_type=MEDIA_TYPES[fmt],
                data=audio,
                size_bytes=len(audio),
                created_at=now,
                used_at=now,
            )
        )
        await _evict(s, settings.speech_cache_max_bytes)
    return audio


# Keep the most recently heard entries that fit in the limit together; drop the rest. One
# evicting transaction at a time (a try-lock: if another is at it, it frees the room).
_EVICT = text(
    """
    DELETE FROM speech_cache c
    USING (
        SELECT message_id, voice, format,
               sum(size_bytes) OVER (ORDER BY used_at DESC, message_id, voice, format) AS kept
        FROM speech_cache
    ) r
    WHERE c.message_id = r.message_id AND c.voice = r.voice AND c.format = r.format
      AND r.kept > :max_bytes
    """
)
_EVICT_LOCK = 0x5EEC4  # pg_advisory_xact_lock key of the speech cache's eviction


async def _evict(s, max_bytes: int) -> None:
    if max_bytes <= 0:  # 0: no limit
        return
    if await s.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _EVICT_LOCK}):
        await s.execute(_EVICT, {"max_bytes": max_bytes})


async def _provider(settings: Settings, *, text: str, voice: str, fmt: Format) -> bytes:
    key = settings.tts_api_key or settings.openai_api_key
    api_key = key.get_secret_value() if key else "not-needed"
    what = "speech synthesiser"
    async with audio_client(
        settings, base_url=settings.tts_base_url, api_key=api_key, what=what
    ) as client:
        response = await client.audio.speech.create(
            model=settings.tts_model,
            voice=voice,
            input=text,
            # OpenAI's "opus" is Opus in an Ogg container.
            response_format="opus" if fmt == "ogg" else fmt,
        )
        return response.content


# eSpeak NG keeps global state (one voice, one callback): one synthesis at a time.
_ESPEAK_LOCK = threading.Lock()
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1


@functools.cache
def _espeak() -> tuple[ctypes.CDLL, int]:
    """The library, initialised once per process, and its sample rate."""
    try:
        import espeakng_loader
    except ImportError as exc:
        raise SpeechUnavailable(SpeechUnavailable.example) from exc
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
    except (OSError, RuntimeError) as exc:
        raise SpeechUnavailable(f"eSpeak NG could not be loaded: {exc}") from exc
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
    if rate <= 0:
        raise SpeechUnavailable("eSpeak NG could not be initialised (its data is missing?)")
    return lib, rate


def synthesize(text: str, *, voice: str = OFFLINE_VOICE) -> tuple[bytes, int]:
    """16-bit mono PCM of `text` spoken by eSpeak NG, and its sample rate."""
    lib, rate = _espeak()
    chunks: list[bytes] = []

    @_CALLBACK
    def collect(samples, count, _events) -> int:
        if count > 0:
            chunks.append(ctypes.string_at(samples, count * 2))
        return 0  # 0: go on

    encoded = text.encode()
    with _ESPEAK_LOCK:
        lib.espeak_SetSynthCallback(collect)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise UnknownVoice(f"Unknown voice {voice!r}; offline voices are eSpeak NG's, e.g. ru")
        status = lib.espeak_Synth(
            encoded, len(encoded) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None
        )
        lib.espeak_Synchronize()
    if status != 0:
        raise SpeechUnavailable(f"eSpeak NG failed to speak (status {status})")
    return b"".join(chunks), rate


def offline(text: str, *, voice: str = OFFLINE_VOICE, fmt: Format = "wav") -> bytes:
    pcm, rate = synthesize(text, voice=voice)
    if fmt == "wav":
        return to_wav(pcm, rate)
    return encode(pcm, rate, fmt)


def to_wav(pcm: bytes, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def encode(pcm: bytes, rate: int, fmt: Format) -> bytes:
    """PCM to mp3 (LAME) or ogg (Opus at 48 kHz, what Opus takes), with PyAV's FFmpeg."""
    try:
        import av
        import numpy as np
    except ImportError as exc:
        raise SpeechUnavailable(
            f"{fmt} needs the av package (pip install av); ask for format=wav"
        ) from exc
    codec, out_rate = {"mp3": ("libmp3lame", rate), "ogg": ("libopus", 48000)}[fmt]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=out_rate, layout="mono")
        samples = np.frombuffer(pcm, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(
            format=stream.codec_context.format,
            layout="mono",
            rate=out_rate,
            frame_size=stream.codec_context.frame_size or None,
        )
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()
