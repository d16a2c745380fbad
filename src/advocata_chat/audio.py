"""What an uploaded recording is: its format from its first bytes, its length from its
packets (PyAV, whose wheel carries FFmpeg's demuxers).

`seconds` hands untrusted bytes to FFmpeg, so the API process never calls it itself: it runs
in the extraction sandbox (sandbox.py, `Extractor.audio_seconds`), bounded in time and memory
like a document's parser. Kept free of the app's imports, so the sandbox's children load
nothing else.
"""

from __future__ import annotations

import io
import wave

from advocata_chat.errors import PayloadTooLarge
from advocata_chat.extract import EmptyDocument, UnreadableFile

# What a recording is, from its first bytes (browsers record webm or ogg with Opus).
AUDIO_TYPES = {
    "webm": "audio/webm",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
}


# Packets a second of audio can take: Opus's shortest frame is 2.5 ms (400 a second); PCM,
# MP3 and AAC come in far fewer. More means a file built to be slow to count.
PACKETS_PER_SECOND = 500


class AudioTooLong(PayloadTooLarge):
    """The recording is longer than `MAX_AUDIO_SECONDS` (or bigger than `MAX_AUDIO_BYTES`,
    or needs more than `EXTRACT_MEMORY_BYTES` to read)."""

    code = "audio_too_long"
    example = "The recording is 185 s long; the limit is 120 s (MAX_AUDIO_SECONDS)"
    example_detail = {"limit": "MAX_AUDIO_SECONDS", "max": 120, "found": 185.0}


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


def warm() -> None:
    """Load PyAV and what it loads lazily on a first file (some of its modules), so that a
    probe under a memory limit spends the limit on the recording, not on libraries."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 80)
    seconds(buf.getvalue(), 1.0)


def seconds(data: bytes, limit: float) -> float:
    """Seconds of audio, read from the packets' timestamps (a browser's webm recording has
    no duration in its header); stops counting once past `limit`."""
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise EmptyDocument("The file has no audio")
            stream = container.streams.audio[0]
            base = stream.time_base
            end, most = 0.0, limit * PACKETS_PER_SECOND + 100
            for n, packet in enumerate(container.demux(stream)):
                if n > most:  # timestamps that stand still never reach `limit`
                    raise UnreadableFile("The recording has more packets than audio could hold")
                if packet.pts is None or base is None:
                    continue
                end = max(end, float((packet.pts + (packet.duration or 0)) * base))
                if end > limit:
                    break
            if not end and container.duration:
                end = container.duration / av.time_base
    except MemoryError:
        raise  # av's ENOMEM is also an FFmpegError: the sandbox reports it as memory
    except av.FFmpegError as exc:
        raise UnreadableFile("The recording could not be read") from exc
    if end <= 0:
        raise EmptyDocument("The recording holds no audio")
    return end
