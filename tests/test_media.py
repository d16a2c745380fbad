"""Images and voice in the chat (issue 16).

- A photo sent with a message is the answer's numbered source: the offline model quotes the
  receipt's amount and cites the photo (`found_by: attachment`), even with retrieval off;
  the message lists its attachments (REST, WebSocket, export). With `OPENAI_VISION` the
  OpenAI-protocol stub receives the picture as an image content block.
- A question recorded as audio (real audio: eSpeak NG speaks it, PyAV packs it as a browser
  would) is transcribed by the stub's `/v1/audio/transcriptions` and answered.
- An answer is spoken offline by eSpeak NG; the audio is decoded to check it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
import wave

import av
import numpy as np
import pytest
from httpx_ws import aconnect_ws
from PIL import Image
from sqlalchemy import func, select

from advocata_chat import speech
from advocata_chat.models import SpeechCache, VoiceUpload
from tests import bombs
from tests.test_documents import DOCS, upload
from tests.test_ocr import RECEIPT, encoded, needs_ocr, text_image

CHAT = "/api/v1/chat/conversations"
CONTRACT = "Договор подряда № 7. Стоимость работ составляет 82 400 рублей. Срок — 30 дней."
NOTE = "Расписка. Гусев Олег Петрович получил от Анны 77 000 рублей. Вернуть до 1 мая 2026 года."


async def _conversation(client, h) -> str:
    r = await client.post(CHAT, json={"title": "Вложения"}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _wav(text: str) -> bytes:
    """A real recording of `text`: eSpeak NG's Russian voice, as a WAV file."""
    return speech.offline(text, fmt="wav")


def _webm(text: str) -> bytes:
    """The same speech as Opus in WebM, what a browser's MediaRecorder uploads (its header
    carries no duration: the length comes from the packets)."""
    pcm, rate = speech.synthesize(text)
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm, dtype=np.int16).reshape(1, -1),
        format="s16",
        layout="mono",
    )
    frame.sample_rate = rate
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=48000, frame_size=960)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _seconds(audio: bytes) -> float:
    """Decoded length of any audio the service produced."""
    with av.open(io.BytesIO(audio)) as c:
        s = c.streams.audio[0]
        return sum(f.samples for f in c.decode(s)) / s.rate


# --- images -------------------------------------------------------------------------------


@needs_ocr
async def test_a_photographed_receipt_sent_with_a_question_is_cited_for_its_amount(
    client, auth, alice
):
    h = auth(alice)
    # Another document with another amount: the answer must come from the photo.
    assert (await upload(client, h, "договор.txt", CONTRACT.encode())).status_code == 201
    cid = await _conversation(client, h)
    photo = encoded(text_image(RECEIPT), "JPEG")
    r = await client.post(
        f"{CHAT}/{cid}/messages/upload",
        data={"message_content": "Сколько итого по чеку?", "use_rag": "false"},
        files=[("files", ("чек.jpg", photo, "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 200, r.text
    question, answer = r.json()["messages"]
    [attached] = question["attachments"]
    assert attached["filename"] == "чек.jpg" and attached["media_type"] == "image/jpeg"
    assert attached["page_count"] == 1 and attached["ocr_confidence"] > 0.5
    assert "4 250" in answer["content"] and "[1]" in answer["content"]
    assert "82 400" not in answer["content"]
    [cite] = answer["citations"]
    assert cite["document_id"] == attached["document_id"] and cite["page"] == 1
    assert "4 250" in cite["quote"]
    assert answer["referenced_documents"] == [attached["document_id"]]

    # The photo is one of the user's documents now (an upload like any other)...
    listed = (await client.get("/api/v1/documents", headers=h)).json()["items"]
    assert attached["document_id"] in [d["id"] for d in listed]
    # ...the conversation read back lists it on the message, and the export shows it.
    again = (await client.get(f"{CHAT}/{cid}", headers=h)).json()["messages"][0]
    assert again["attachments"] == question["attachments"]
    md = (await client.get(f"{CHAT}/{cid}/export", params={"format": "md"}, headers=h)).text
    assert "Вложения: чек.jpg" in md


async def test_a_document_attached_right_after_its_upload_is_answered_from(client, auth, alice):
    # Without ?wait the upload returns while its indexing job is still queued; a message
    # sent with it at once waits for the job instead of answering from nothing.
    h = auth(alice)
    r = await client.post(DOCS, headers=h, files={"file": ("расписка.txt", NOTE.encode())})
    assert r.status_code == 201 and r.json()["status"] != "ready", r.text
    cid = await _conversation(client, h)
    body = {
        "message_content": "Сколько денег получил Гусев?",
        "use_rag": False,
        "attachments": [r.json()["id"]],
    }
    answered = await client.post(f"{CHAT}/{cid}/messages", json=body, headers=h)
    assert answered.status_code == 200, answered.text
    answer = answered.json()["messages"][-1]
    assert "77 000" in answer["content"]
    assert [c["document_id"] for c in answer["citations"]] == [r.json()["id"]]


async def test_attachments_by_id_over_rest_and_the_websocket(make_client, auth, alice):
    async with make_client() as client:
        h = auth(alice)
        note = (await upload(client, h, "расписка.txt", NOTE.encode())).json()
        (await upload(client, h, "договор.txt", CONTRACT.encode())).json()
        cid = await _conversation(client, h)
        # REST: JSON `attachments`, retrieval off: the note alone answers.
        body = {
            "message_content": "Сколько денег получил Гусев?",
            "use_rag": False,
            "attachments": [note["id"]],
        }
        r = await client.post(f"{CHAT}/{cid}/messages", json=body, headers=h)
        assert r.status_code == 200, r.text
        question, answer = r.json()["messages"]
        assert [a["document_id"] for a in question["attachments"]] == [note["id"]]
        assert "77 000" in answer["content"]
        assert [c["document_id"] for c in answer["citations"]] == [note["id"]]

        # Regenerate answers the same question with the same attachment; an edited question
        # keeps it.
        r = await client.post(f"{CHAT}/{cid}/regenerate", json={"use_rag": False}, headers=h)
        assert r.status_code == 200 and "77 000" in r.json()["messages"][-1]["content"]
        edit = {"content": "Какую сумму получил Гусев?", "use_rag": False}
        r = await client.patch(f"{CHAT}/{cid}/messages/{question['id']}", json=edit, headers=h)
        assert r.status_code == 200, r.text
        edited, answer = r.json()["messages"]
        assert edited["replaces_id"] == question["id"]
        assert edited["attachments"] == question["attachments"] and "77 000" in answer["content"]

        # WebSocket: the `message` frame's `attachments`; the sources frame names it first.
        token = h["Authorization"].split()[1]
        async with aconnect_ws(f"http://test/ws/chat/{cid}?token={token}", client) as ws:
            assert json.loads(await ws.receive_text())["type"] == "connected"
            frame = {
                "type": "message",
                "content": "До какого числа вернуть деньги?",
                "use_rag": False,
                "attachments": [note["id"]],
            }
            await ws.send_text(json.dumps(frame))
            frames = {}
            while (got := json.loads(await ws.receive_text()))["type"] not in ("message", "error"):
                frames.setdefault(got["type"], got)
            assert got["type"] == "message", got
        received = frames["message_received"]["message"]
        assert [a["document_id"] for a in received["attachments"]] == [note["id"]]
        first = frames["sources"]["sources"][0]
        assert first["document_id"] == note["id"] and first["found_by"] == "attachment"
        assert "1 мая" in got["message"]["content"]


async def test_an_attachment_that_is_not_yours_or_one_too_many_is_refused(client, auth, alice, bob):
    h = auth(alice)
    bobs = (await upload(client, auth(bob), "bob.txt", NOTE.encode())).json()
    cid = await _conversation(client, h)
    for ids, what in (
        ([bobs["id"]], "not found"),
        ([str(uuid.uuid4())], "not found"),
        ([str(uuid.uuid4()) for _ in range(5)], "MAX_ATTACHMENTS"),
    ):
        body = {"message_content": "Что здесь?", "attachments": ids}
        r = await client.post(f"{CHAT}/{cid}/messages", json=body, headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "validation_error" and what in r.json()["error"]
    # Nothing was stored for the refused messages.
    assert (await client.get(f"{CHAT}/{cid}", headers=h)).json()["messages"] == []


async def test_a_websocket_frame_with_bad_attachments_gets_an_error_frame(make_client, auth, alice):
    async with make_client() as client:
        h = auth(alice)
        cid = await _conversation(client, h)
        token = h["Authorization"].split()[1]
        async with aconnect_ws(f"http://test/ws/chat/{cid}?token={token}", client) as ws:
            assert json.loads(await ws.receive_text())["type"] == "connected"
            for bad in ("abc", ["not-a-uuid"], [1, 2]):
                frame = {"type": "message", "content": "Что здесь?", "attachments": bad}
                await ws.send_text(json.dumps(frame))
                got = json.loads(await ws.receive_text())
                assert got["type"] == "error" and got["code"] == "validation_error", got
            frame = {"type": "message", "content": "Что здесь?", "attachments": [str(uuid.uuid4())]}
            await ws.send_text(json.dumps(frame))
            got = json.loads(await ws.receive_text())
            assert got["code"] == "validation_error" and "not found" in got["error"], got


@needs_ocr
@pytest.mark.parametrize("vision", [True, False])
async def test_a_vision_model_is_shown_the_photo_as_an_image_block(
    stub_client, stub, auth, alice, vision
):
    async with stub_client(openai_vision=vision) as client:
        h = auth(alice)
        photo = encoded(text_image(RECEIPT), "PNG")
        doc = (await upload(client, h, "чек.png", photo)).json()
        cid = await _conversation(client, h)
        body = {"message_content": "Что на фото?", "attachments": [doc["id"]]}
        r = await client.post(f"{CHAT}/{cid}/messages", json=body, headers=h)
        assert r.status_code == 200, r.text
    chat = [b for b in stub.state.requests if "messages" in b][-1]
    prompt = json.dumps(chat["messages"], ensure_ascii=False)
    assert "Итого" in prompt  # the OCR text is a numbered source either way
    if vision:
        [url] = stub.state.images
        head, data = url.split(",", 1)
        assert head in ("data:image/png;base64", "data:image/jpeg;base64")
        with Image.open(io.BytesIO(base64.b64decode(data))) as shown:
            assert shown.size == (1000, 600)  # the photo itself, at its own size
    else:
        assert stub.state.images == []


# --- voice in -----------------------------------------------------------------------------


async def test_a_question_sent_as_speech_is_transcribed_and_answered(
    stub_client, stub, auth, alice
):
    stub.state.transcript = "Какая сумма указана в расписке?"
    async with stub_client() as client:
        h = auth(alice)
        cid = await _conversation(client, h)
        recording = _webm("Какая сумма указана в расписке?")
        r = await client.post(
            f"{CHAT}/{cid}/voice",
            files={"file": ("вопрос.webm", recording, "audio/webm")},
            headers=h,
        )
        assert r.status_code == 200, r.text
        question, answer = r.json()["messages"]
    [sent] = stub.state.transcriptions
    assert sent["model"] == "whisper-1" and sent["language"] == "ru"
    assert sent["bytes"] == len(recording) and sent["filename"].endswith(".webm")
    assert question["content"] == "Какая сумма указана в расписке?"
    assert question["voice"]["transcript"] == question["content"]
    assert question["voice"]["language"] == "russian"
    assert question["voice"]["media_type"] == "audio/webm"
    assert question["voice"]["duration_seconds"] > 0
    assert answer["content"] == "Ответ модели на вопрос: Какая сумма указана в расписке?"


async def test_voice_without_a_recogniser_is_503_naming_the_setting(client, auth, alice):
    h = auth(alice)
    cid = await _conversation(client, h)
    r = await client.post(
        f"{CHAT}/{cid}/voice", files={"file": ("q.wav", _wav("Здравствуйте"))}, headers=h
    )
    assert r.status_code == 503 and r.json()["code"] == "transcription_unavailable"
    assert "STT_BASE_URL" in r.json()["error"]
    assert (await client.get(f"{CHAT}/{cid}", headers=h)).json()["messages"] == []


async def test_a_recording_too_long_unreadable_or_not_audio_is_refused(
    stub_client, stub, auth, alice
):
    async with stub_client(max_audio_seconds=1.0) as client:
        h = auth(alice)
        cid = await _conversation(client, h)
        long_one = _wav("Это сообщение явно длиннее одной секунды звучания")
        cases = [
            (("q.wav", long_one), 413, "audio_too_long"),
            (("q.webm", b"\x1a\x45\xdf\xa3" + b"\x00" * 200), 422, "unreadable_file"),
            (("q.mp3", "просто текст".encode()), 415, "unsupported_file"),
            (("q.ogg", b""), 422, "empty_document"),
        ]
        for file, status, code in cases:
            r = await client.post(f"{CHAT}/{cid}/voice", files={"file": file}, headers=h)
            assert (r.status_code, r.json()["code"]) == (status, code), (file[0], r.text)
        assert (
            "MAX_AUDIO_SECONDS"
            in (
                await client.post(f"{CHAT}/{cid}/voice", files={"file": cases[0][0]}, headers=h)
            ).json()["error"]
        )
    assert stub.state.transcriptions == []  # nothing refused here reached the provider


async def test_silence_is_no_speech(stub_client, stub, auth, alice):
    stub.state.transcript = "  "
    async with stub_client() as client:
        h = auth(alice)
        cid = await _conversation(client, h)
        r = await client.post(
            f"{CHAT}/{cid}/voice", files={"file": ("q.wav", _wav("а"))}, headers=h
        )
    assert r.status_code == 422 and r.json()["code"] == "no_speech"


# --- voice in, over the WebSocket ------------------------------------------------------------


def _socket(h: dict, cid: str) -> str:
    return f"http://test/ws/chat/{cid}?token={h['Authorization'].split()[1]}"


async def _upload_voice(client, h, cid: str, recording: bytes, name: str = "вопрос.webm"):
    return await client.post(
        f"{CHAT}/{cid}/voice/uploads", files={"file": (name, recording)}, headers=h
    )


async def _until_final(ws) -> tuple[dict, dict]:
    """The socket's frames up to a turn's `message` or an `error`: (first of each type, last)."""
    seen: dict = {}
    while (got := json.loads(await ws.receive_text()))["type"] not in ("message", "error"):
        seen.setdefault(got["type"], got)
    return seen, got


async def test_a_recording_uploaded_then_named_in_a_voice_frame_is_answered(
    stub_client, stub, auth, alice
):
    stub.state.transcript = "Какая сумма указана в расписке?"
    async with stub_client() as client:
        h = auth(alice)
        cid = await _conversation(client, h)
        recording = _webm("Какая сумма указана в расписке?")
        r = await _upload_voice(client, h, cid, recording)
        assert r.status_code == 201, r.text
        upload = r.json()
        assert upload["conversation_id"] == cid and upload["media_type"] == "audio/webm"
        assert upload["size_bytes"] == len(recording) and 1 < upload["duration_seconds"] < 10
        assert upload["expires_at"] > upload["created_at"]
        assert stub.state.transcriptions == []  # nothing is sent until a frame asks

        async with aconnect_ws(_socket(h, cid), client) as ws:
            assert json.loads(await ws.receive_text())["type"] == "connected"
            await ws.send_text(json.dumps({"type": "voice", "upload_id": upload["id"]}))
            seen, final = await _until_final(ws)
            assert final["type"] == "message", final
            # The same id again: used up, and nothing is stored a second time.
            await ws.send_text(json.dumps({"type": "voice", "upload_id": upload["id"]}))
            again = json.loads(await ws.receive_text())
        received = seen["message_received"]["message"]
        assert received["content"] == "Какая сумма указана в расписке?"
        answer = final["message"]["content"]
        assert answer == "Ответ модели на вопрос: Какая сумма указана в расписке?"
        assert again["type"] == "error" and again["code"] == "not_found", again

        question, stored = (await client.get(f"{CHAT}/{cid}", headers=h)).json()["messages"]
    assert stored["content"] == answer
    assert question["voice"]["transcript"] == question["content"] == received["content"]
    assert question["voice"]["language"] == "russian"
    assert question["voice"]["media_type"] == "audio/webm"
    assert question["voice"]["duration_seconds"] > 0
    # Transcribed once, from the uploaded bytes (the second frame never reached the recogniser).
    [sent] = stub.state.transcriptions
    assert sent["bytes"] == len(recording) and sent["filename"].endswith(".webm")


async def test_a_voice_frame_naming_no_recording_of_yours_here_is_not_found(
    stub_client, stub, auth, alice, bob
):
    async with stub_client() as client:
        h, hb = auth(alice), auth(bob)
        cid, other = await _conversation(client, h), await _conversation(client, h)
        recording = _wav("Сколько денег получил Гусев?")
        bobs = (await _upload_voice(client, hb, await _conversation(client, hb), recording)).json()
        elsewhere = (await _upload_voice(client, h, other, recording)).json()
        ids = {
            "someone else's": bobs["id"],
            "never uploaded": str(uuid.uuid4()),
            "another conversation's": elsewhere["id"],
        }
        errors = {}
        async with aconnect_ws(_socket(h, cid), client) as ws:
            assert json.loads(await ws.receive_text())["type"] == "connected"
            for what, upload_id in ids.items():
                await ws.send_text(json.dumps({"type": "voice", "upload_id": upload_id}))
                errors[what] = json.loads(await ws.receive_text())
            await ws.send_text(json.dumps({"type": "voice", "upload_id": "abc"}))
            malformed = json.loads(await ws.receive_text())
        # A stranger's id is answered exactly like one that never existed.
        assert len({json.dumps(e, sort_keys=True) for e in errors.values()}) == 1, errors
        error = errors["someone else's"]
        assert error["type"] == "error" and error["code"] == "not_found"
        assert "voice/uploads" in error["error"]
        assert malformed["code"] == "validation_error" and "upload_id" in malformed["error"]
        assert (await client.get(f"{CHAT}/{cid}", headers=h)).json()["messages"] == []
    assert stub.state.transcriptions == []

    # An upload older than VOICE_UPLOAD_TTL_SECONDS is gone the same way.
    async with stub_client(voice_upload_ttl_seconds=0) as client:
        cid = await _conversation(client, h)
        stale = (await _upload_voice(client, h, cid, recording)).json()
        async with aconnect_ws(_socket(h, cid), client) as ws:
            assert json.loads(await ws.receive_text())["type"] == "connected"
            await ws.send_text(json.dumps({"type": "voice", "upload_id": stale["id"]}))
            assert json.loads(await ws.receive_text()) == error
        assert (await client.get(f"{CHAT}/{cid}", headers=h)).json()["messages"] == []


async def test_a_recording_nobody_sends_is_deleted_once_it_expires(stub_client, auth, alice):
    h = auth(alice)
    # No further upload comes: the ingestion worker's round is what deletes it.
    async with stub_client(voice_upload_ttl_seconds=3, ingest_heartbeat_seconds=0.2) as client:
        cid = await _conversation(client, h)
        upload_id = (await _upload_voice(client, h, cid, _wav("Да"))).json()["id"]
        rt = client.app.state.runtime

        async def kept() -> int:
            async with rt.sessions() as s:
                query = select(func.count()).where(VoiceUpload.id == uuid.UUID(upload_id))
                return await s.scalar(query)

        assert await kept() == 1
        for _ in range(150):
            if not await kept():
                break
            await asyncio.sleep(0.1)
        assert await kept() == 0, "an expired recording is still stored"


async def test_a_voice_frame_without_a_recogniser_is_an_error_frame_naming_the_setting(
    make_client, stub, auth, alice
):
    h = auth(alice)
    recording = _wav("Здравствуйте")
    # Uploaded while a recogniser was configured; the server has none when the frame comes.
    async with make_client(ws=False, stt_base_url=stub.base_url) as client:
        cid = await _conversation(client, h)
        upload = (await _upload_voice(client, h, cid, recording, "q.wav")).json()
    async with make_client() as client:
        r = await _upload_voice(client, h, cid, recording, "q.wav")
        assert r.status_code == 503 and r.json()["code"] == "transcription_unavailable"
        async with aconnect_ws(_socket(h, cid), client) as ws:
            assert json.loads(await ws.receive_text())["type"] == "connected"
            await ws.send_text(json.dumps({"type": "voice", "upload_id": upload["id"]}))
            got = json.loads(await ws.receive_text())
        assert got["type"] == "error" and got["code"] == "transcription_unavailable", got
        assert "STT_BASE_URL" in got["error"]
        assert (await client.get(f"{CHAT}/{cid}", headers=h)).json()["messages"] == []
    assert stub.state.transcriptions == []


async def test_voice_uploads_are_checked_like_the_voice_route_and_bounded_per_user(
    stub_client, stub, auth, alice, bob
):
    async with stub_client(max_audio_seconds=1.5, max_voice_uploads=2) as client:
        h = auth(alice)
        cid = await _conversation(client, h)
        cases = [
            (("q.wav", _wav("Это сообщение явно длиннее полутора секунд звучания")), 413),
            (("q.mp3", "просто текст".encode()), 415),
            (("q.webm", b"\x1a\x45\xdf\xa3" + b"\x00" * 200), 422),
        ]
        for (name, data), status in cases:
            r = await _upload_voice(client, h, cid, data, name)
            assert r.status_code == status, (name, r.text)
        short = _wav("Да")
        for _ in range(2):
            assert (await _upload_voice(client, h, cid, short, "q.wav")).status_code == 201
        r = await _upload_voice(client, h, cid, short, "q.wav")
        assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
        assert "MAX_VOICE_UPLOADS" in r.json()["error"] and int(r.headers["retry-after"]) > 0
        # The limit is per user; a stranger's conversation is a 404 before anything is read.
        bobs = await _conversation(client, auth(bob))
        assert (await _upload_voice(client, auth(bob), bobs, short, "q.wav")).status_code == 201
        r = await _upload_voice(client, h, bobs, short, "q.wav")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert stub.state.transcriptions == []


async def test_hostile_recordings_are_read_in_the_sandbox_and_the_server_stays_up(
    stub_client, stub, auth, alice
):
    stalled = bombs.ogg_stalled_clock(4000)  # 2 MB whose length takes ~9 s to count
    garbage = {
        "q.webm": b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 40,
        "q.ogg": b"OggS" + b"\xff" * 5000,
        "q.wav": b"RIFF\xff\xff\xff\xffWAVEfmt " + b"\x07" * 3000,
        "q.m4a": b"\x00\x00\x00\x20ftypisom" + b"\x7f" * 5000,
        "q.mp3": b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"\x00" * 5000,
    }
    # With the length limit lifted, only the sandbox's clock stops the count.
    async with stub_client(extract_timeout_seconds=1, max_audio_seconds=10**6) as client:
        h = auth(alice)
        cid = await _conversation(client, h)
        r = await _upload_voice(client, h, cid, stalled, "q.ogg")
        assert r.status_code == 422 and r.json()["code"] == "extraction_timeout", r.text
        assert r.json()["detail"]["limit"] == "EXTRACT_TIMEOUT_SECONDS"
        for name, data in garbage.items():
            r = await _upload_voice(client, h, cid, data, name)
            assert r.status_code == 422 and r.json()["code"] == "unreadable_file", (name, r.text)
        # The server is up and reads the next recording as ever.
        r = await _upload_voice(client, h, cid, _wav("Сколько стоит?"), "q.wav")
        assert r.status_code == 201 and r.json()["duration_seconds"] > 0.3, r.text
        assert (await client.get("/healthz")).status_code == 200
    # Within MAX_AUDIO_SECONDS a clock that stands still is refused at once, never counted on.
    async with stub_client() as client:
        cid = await _conversation(client, h)
        r = await client.post(f"{CHAT}/{cid}/voice", files={"file": ("q.ogg", stalled)}, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "unreadable_file", r.text
    assert stub.state.transcriptions == []


# --- voice out ----------------------------------------------------------------------------


async def _answered(client, h) -> tuple[str, dict]:
    await upload(client, h, "расписка.txt", NOTE.encode())
    cid = await _conversation(client, h)
    body = {"message_content": "Сколько денег получил Гусев?"}
    r = await client.post(f"{CHAT}/{cid}/messages", json=body, headers=h)
    assert r.status_code == 200, r.text
    answer = r.json()["messages"][-1]
    assert "[1]" in answer["content"]
    return cid, answer


async def test_an_answer_is_spoken_offline_in_each_format(client, auth, alice):
    h = auth(alice)
    cid, answer = await _answered(client, h)
    url = f"{CHAT}/{cid}/messages/{answer['id']}/speech"
    r = await client.get(url, params={"format": "wav"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(r.content)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        seconds = w.getnframes() / w.getframerate()
    # The spoken text is the answer without its markers, plus one short disclaimer.
    said = speech.spoken_text(answer["content"], limit=4000)
    assert "[1]" not in said and said.endswith(speech.SPOKEN_DISCLAIMER)
    # Russian speech runs at roughly 10-20 characters a second.
    assert len(said) / 25 < seconds < len(said) / 6, (seconds, len(said))
    pcm = r.content[44:]
    assert (
        max(
            abs(int.from_bytes(pcm[i : i + 2], "little", signed=True))
            for i in range(0, len(pcm), 200)
        )
        > 1000
    )  # not silence

    for fmt, media, magic in (("mp3", "audio/mpeg", b"ID3"), ("ogg", "audio/ogg", b"OggS")):
        r = await client.get(url, params={"format": fmt}, headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == media
        assert r.content.startswith(magic)
        assert abs(_seconds(r.content) - seconds) < 0.2, fmt

    # Cached: asked again, the same bytes, from one stored row per format.
    again = await client.get(url, params={"format": "ogg"}, headers=h)
    assert again.content == r.content
    rt = client.app.state.runtime
    async with rt.sessions() as s:
        rows = await s.scalar(
            select(func.count()).where(SpeechCache.message_id == uuid.UUID(answer["id"]))
        )
    assert rows == 3


async def test_the_speech_cache_keeps_the_most_recently_heard_answers_within_its_size(
    client, make_client, auth, alice
):
    h = auth(alice)
    (a, first), (b, second), (c, third) = [await _answered(client, h) for _ in range(3)]
    sizes = sorted(
        len(speech.offline(speech.spoken_text(m["content"], limit=4000), fmt="wav"))
        for m in (first, second, third)
    )
    room = sizes[1] + sizes[2] + sizes[0] // 2  # any two spoken answers fit, never three

    async def hear(cid: str, message: dict) -> bytes:
        url = f"{CHAT}/{cid}/messages/{message['id']}/speech"
        r = await client2.get(url, params={"format": "wav"}, headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav", r.text
        return r.content

    async def cached() -> set[str]:
        async with client2.app.state.runtime.sessions() as s:
            ids = await s.scalars(select(SpeechCache.message_id))
            total = await s.scalar(select(func.sum(SpeechCache.size_bytes)))
        assert total <= room  # everyone's entries together (earlier tests' went first)
        return {str(i) for i in ids} & {first["id"], second["id"], third["id"]}

    async with make_client(ws=False, speech_cache_max_bytes=room) as client2:
        one = await hear(a, first)
        two = await hear(b, second)
        assert await cached() == {first["id"], second["id"]}
        assert await hear(a, first) == one  # heard again: now the second is the oldest
        await hear(c, third)
        assert await cached() == {first["id"], third["id"]}
        # Evicted, the second answer still speaks (synthesised again: eSpeak NG's output
        # varies by a few milliseconds from one run to the next)...
        again = await hear(b, second)
        assert again.startswith(b"RIFF") and abs(_seconds(again) - _seconds(two)) < 0.1
        assert _seconds(again) > 1
        # ...and is cached in place of the least recently heard, the first.
        assert await cached() == {second["id"], third["id"]}


async def test_speech_refuses_an_unknown_voice_or_format(client, auth, alice):
    h = auth(alice)
    cid, answer = await _answered(client, h)
    url = f"{CHAT}/{cid}/messages/{answer['id']}/speech"
    r = await client.get(url, params={"voice": "zz-nonexistent"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "unknown_voice"
    r = await client.get(url, params={"format": "flac"}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    r = await client.get(f"{CHAT}/{cid}/messages/{uuid.uuid4()}/speech", headers=h)
    assert r.status_code == 404


async def test_speech_through_the_provider(stub_client, stub, auth, alice):
    async with stub_client(tts_base_url=stub.base_url) as client:
        h = auth(alice)
        stub.state.reply = "Гусев получил 77 000 рублей [1]. Вернуть до 1 мая [1]."
        cid, answer = await _answered(client, h)
        r = await client.get(
            f"{CHAT}/{cid}/messages/{answer['id']}/speech", params={"format": "wav"}, headers=h
        )
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    [asked] = stub.state.speeches
    assert asked["model"] == "tts-1" and asked["voice"] == "alloy"
    assert asked["response_format"] == "wav"
    assert asked["input"] == "Гусев получил 77 000 рублей. Вернуть до 1 мая."
    with wave.open(io.BytesIO(r.content)) as w:
        assert w.getnframes() / w.getframerate() == len(asked["input"]) // 15


def test_spoken_text_drops_markers_and_markup_and_cuts_at_a_sentence():
    said = speech.spoken_text("**Да.** Срок — 3 года [1, 2]. Подробнее [3]. " * 3, limit=60)
    assert "[" not in said and "*" not in said
    assert len(said) <= 60 and said.endswith(".")


def _m4a(text: str) -> bytes:
    pcm, rate = speech.synthesize(text)
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    buf = io.BytesIO()
    with av.open(buf, "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate, frame_size=1024)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "media_type"),
    [
        (lambda t: speech.offline(t, fmt="wav"), "audio/wav"),
        (lambda t: speech.offline(t, fmt="mp3"), "audio/mpeg"),
        (lambda t: speech.offline(t, fmt="ogg"), "audio/ogg"),
        (_webm, "audio/webm"),
        (_m4a, "audio/mp4"),
    ],
    ids=["wav", "mp3", "ogg", "webm", "m4a"],
)
def test_each_recording_format_is_recognised_with_its_length(make_settings, make, media_type):
    from advocata_chat import audio, voice

    text = "Здравствуйте, у меня вопрос о возврате долга по расписке"
    pcm, rate = speech.synthesize(text)
    seconds = len(pcm) / 2 / rate
    recording, settings = make(text), make_settings()
    # What audio_info does, with the length read here rather than in the sandbox's child.
    kind = voice.audio_type(settings, recording)
    found = voice.check_length(settings, audio.seconds(recording, settings.max_audio_seconds))
    assert kind == media_type
    assert abs(found - seconds) < 0.15, (found, seconds)
    short = make_settings(max_audio_seconds=seconds / 2)
    with pytest.raises(voice.AudioTooLong):
        voice.check_length(short, audio.seconds(recording, short.max_audio_seconds))


async def test_a_photo_over_the_pixel_limit_is_refused_and_nothing_is_sent(
    make_client, auth, alice
):
    async with make_client(ws=False, max_image_pixels=100_000) as client:
        h = auth(alice)
        cid = await _conversation(client, h)
        big = encoded(text_image(RECEIPT, size=(1000, 600)), "PNG")  # 600 000 pixels
        r = await client.post(
            f"{CHAT}/{cid}/messages/upload",
            data={"message_content": "Сколько итого по чеку?"},
            files=[("files", ("чек.png", big, "image/png"))],
            headers=h,
        )
        assert r.status_code == 413 and r.json()["code"] == "document_too_large", r.text
        assert r.json()["detail"]["limit"] == "MAX_IMAGE_PIXELS"
        assert (await client.get(f"{CHAT}/{cid}", headers=h)).json()["messages"] == []
        assert (await client.get("/api/v1/documents", headers=h)).json()["items"] == []
