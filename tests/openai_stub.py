"""A tiny server that speaks the OpenAI wire protocol, for tests and benchmarks.

It is the only stand-in for the model provider: the real `openai` client and LangChain's
`ChatOpenAI` run against it. Behaviour is set per test through `StubState`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import socket
import threading
import time
import wave
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class StubState:
    # ok | 500 | 429 | slow | hang (accepts, never answers) | drop (stream breaks mid-answer)
    mode: str = "ok"
    fail_times: int = 0  # answer the first N chat requests with `fail_status`, then behave
    fail_status: int = 500  # 500 or 429
    # The next N connections to `flaky_base_url` are closed before any response (a connection
    # error for the client), then it forwards to the stub; set with `drop_next_connections`.
    drop_connections: int = 0
    dropped: int = 0
    # Set when a chat request arrives; with `gate`, the answer waits until the test sets it.
    arrived: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event | None = None
    fail_models: set[str] = field(default_factory=set)  # these model names always get 500
    delay: float = 0.0  # seconds before answering
    reply: str | None = None  # fixed answer; default echoes the question
    report_usage: bool = True
    usage: tuple[int, int] = (11, 7)  # prompt, completion tokens reported
    requests: list[dict] = field(default_factory=list)
    # Speech: what `audio/transcriptions` hears (None: 400 as for unreadable audio), and the
    # image content blocks chat requests carried (their data: URLs).
    transcript: str | None = "Какая сумма указана в чеке?"
    transcriptions: list[dict] = field(default_factory=list)
    speeches: list[dict] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def _image_blocks(body: dict) -> list[str] | None:
    """The image URLs of the chat request's content blocks; None if a block is malformed
    (OpenAI answers 400 to that)."""
    urls = []
    for m in body.get("messages", []):
        if not isinstance(m.get("content"), list):
            continue
        for part in m["content"]:
            if part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                if not url.startswith(("data:image/", "https://")):
                    return None
                urls.append(url)
            elif part.get("type") != "text":
                return None
    return urls


def _answer(state: StubState, body: dict) -> str:
    if state.reply is not None:
        return state.reply
    last = next((m for m in reversed(body.get("messages", [])) if m["role"] == "user"), None)
    text = last["content"] if last else ""
    if isinstance(text, list):
        text = " ".join(p.get("text", "") for p in text)
    return f"Ответ модели на вопрос: {text}"


def _embed(text: str, dims: int) -> list[float]:
    # Deterministic bag-of-words vectors, so similar texts are near each other.
    v = [0.0] * dims
    for word in text.lower().split():
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        v[h % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def build_app(state: StubState) -> Starlette:
    async def chat(request: Request):
        body = await request.json()
        state.requests.append(body)
        state.arrived.set()
        if state.gate is not None:
            await asyncio.to_thread(state.gate.wait)
        if state.delay:
            await asyncio.sleep(state.delay)
        if state.mode == "hang":
            await asyncio.sleep(3600)
        if state.fail_times > 0:
            state.fail_times -= 1
            # retry-after-ms keeps the openai client's backoff short in tests.
            return JSONResponse(
                {"error": {"message": "flaky", "type": "server_error"}},
                state.fail_status,
                headers={"retry-after-ms": "10"},
            )
        if body.get("model") in state.fail_models:
            return JSONResponse({"error": {"message": "flaky", "type": "server_error"}}, 500)
        if state.mode == "500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, 500)
        images = _image_blocks(body)
        if images is None:
            return JSONResponse({"error": {"message": "bad content block"}}, 400)
        state.images.extend(images)
        if state.mode == "429":
            return JSONResponse(
                {"error": {"message": "slow down", "type": "rate_limit"}},
                429,
                headers={"retry-after": "0"},
            )
        text = _answer(state, body)
        prompt_t, completion_t = state.usage
        usage = {
            "prompt_tokens": prompt_t,
            "completion_tokens": completion_t,
            "total_tokens": prompt_t + completion_t,
        }
        base = {"id": "chatcmpl-stub", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            return JSONResponse(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    **({"usage": usage} if state.report_usage else {}),
                }
            )

        want_usage = (body.get("stream_options") or {}).get("include_usage")
        words = text.split(" ")

        async def events():
            for i, w in enumerate(words):
                if state.mode == "drop" and i == 3:
                    raise ConnectionResetError("stub dropped the stream")
                delta = {"content": w if i == 0 else " " + w}
                if i == 0:
                    delta["role"] = "assistant"
                chunk = {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
                if state.mode == "slow":
                    await asyncio.sleep(0.02)
            end = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield f"data: {json.dumps(end)}\n\n"
            if want_usage and state.report_usage:
                tail = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                yield f"data: {json.dumps(tail)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def embeddings(request: Request):
        body = await request.json()
        state.requests.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body.get("dimensions") or 1536
        data = []
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            data.append({"object": "embedding", "index": i, "embedding": _embed(text, dims)})
        tokens = sum(len(str(x).split()) for x in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def transcriptions(request: Request):
        # OpenAI's multipart form: file, model, language, response_format.
        form = await request.form()
        audio = await form["file"].read()
        state.transcriptions.append(
            {
                "model": form.get("model"),
                "language": form.get("language"),
                "response_format": form.get("response_format"),
                "filename": form["file"].filename,
                "bytes": len(audio),
            }
        )
        if state.transcript is None or not audio:
            return JSONResponse({"error": {"message": "could not decode audio"}}, 400)
        if form.get("response_format") == "verbose_json":
            return JSONResponse(
                {
                    "task": "transcribe",
                    "language": "russian",
                    "duration": 2.5,
                    "text": state.transcript,
                    "segments": [],
                }
            )
        return JSONResponse({"text": state.transcript})

    async def speech(request: Request):
        body = await request.json()
        state.speeches.append(body)
        fmt = body.get("response_format", "mp3")
        # A second of silence per 15 characters, as a real WAV; other formats get their
        # magic bytes (the client passes the bytes through untouched).
        seconds = max(1, len(body["input"]) // 15)
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\0\0" * 8000 * seconds)
        audio = {"wav": buf.getvalue(), "opus": b"OggS" + bytes(60), "mp3": b"ID3" + bytes(60)}
        media = {"wav": "audio/wav", "opus": "audio/ogg", "mp3": "audio/mpeg"}
        return Response(audio[fmt], media_type=media[fmt])

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
            Route("/v1/audio/speech", speech, methods=["POST"]),
        ]
    )


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


class OpenAIStub:
    """Runs the stub on 127.0.0.1 in a background thread."""

    def __init__(self) -> None:
        self.state = StubState()
        self._sock = _listener()
        self.port = self._sock.getsockname()[1]
        self._flaky_sock = _listener()
        self._flaky_sock.listen()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._forwarded: set[asyncio.StreamWriter] = set()
        config = uvicorn.Config(build_app(self.state), log_level="critical", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        front = await asyncio.start_server(self._flaky, sock=self._flaky_sock)
        async with front:
            await self._server.serve(sockets=[self._sock])

    async def _flaky(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state.drop_connections > 0:
            self.state.drop_connections -= 1
            self.state.dropped += 1
            await reader.read(1)  # the client has sent its request; close without a word
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._forwarded.add(writer)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._forwarded.discard(writer)

    def drop_next_connections(self, n: int) -> None:
        """Drop the next `n` connections to `flaky_base_url`. Open ones are closed first, so
        that a client's pooled keep-alive connection cannot carry the next request."""

        async def close_open() -> None:
            self.state.drop_connections = n
            for writer in list(self._forwarded):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(close_open(), self._loop).result(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def flaky_base_url(self) -> str:
        """The same stub behind a door that can drop connections (`drop_next_connections`)."""
        return f"http://127.0.0.1:{self._flaky_sock.getsockname()[1]}/v1"

    def reset(self) -> None:
        fresh = StubState()
        for name in fresh.__dataclass_fields__:
            setattr(self.state, name, getattr(fresh, name))

    def start(self) -> OpenAIStub:
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("OpenAI stub did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
