"""Text extraction (and audio probing) in child processes with a time and a memory limit.

A crafted upload can make a parser spin for minutes or allocate gigabytes. Run in a child,
that costs one process, killed on time, never the API process or the memory it keeps.

Each of `EXTRACT_CONCURRENCY` workers is a small single-threaded process (started once, from
multiprocessing's forkserver, with the parsers imported and warmed up) that forks a fresh
child for every file: the child sets its limits (RLIMIT_AS, RLIMIT_CPU as a backstop),
extracts and writes its answer to a pipe; the worker kills it when the time is up. An
ordinary file pays a fork and two pipe copies (tens of milliseconds, `bench.uploads`), not an
interpreter start, and every file starts from the same clean memory. Answers travel as JSON,
so nothing a child writes is ever unpickled by the API process.

An uploaded recording is probed the same way (`audio_seconds`: FFmpeg's demuxers read the
untrusted bytes), under the same limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import multiprocessing
import os
import pickle
import resource
import select
import signal
import time
from multiprocessing.connection import Connection

from advocata_chat import audio
from advocata_chat.errors import AppError, InvalidInput
from advocata_chat.extract import (
    DocumentTooLarge,
    EmptyDocument,
    Extracted,
    Limits,
    UnreadableFile,
    UnsupportedFile,
    extract,
)
from advocata_chat.ocr import OcrUnavailable

log = logging.getLogger(__name__)
PARSERS = [
    "advocata_chat.extract",
    "advocata_chat.audio",
    "pypdf",
    "docx",
    "bs4",
    "PIL.Image",
    "pytesseract",
]
REFUSALS = {
    cls.code: cls
    for cls in (UnsupportedFile, UnreadableFile, EmptyDocument, DocumentTooLarge, OcrUnavailable)
}
EXTRACT, AUDIO = "extract", "audio"  # a job's kind
GRACE_SECONDS = 10  # the worker enforces the time limit; the API process waits this longer
# Sent by the child, before its answer, when OCR starts: from then on the job has
# OCR_TIMEOUT_SECONDS to finish. JSON never starts with this byte.
OCR_STARTED = b"\x01"


class ExtractionTimeout(InvalidInput):
    code = "extraction_timeout"


def _answer(out, job: tuple) -> bytes:
    """In the forked child: extract (or probe audio) under limits, answer in JSON. The
    limits are inherited by the `tesseract` processes OCR starts (each has its own CPU
    allowance)."""
    kind, payload, memory, seconds, ocr_seconds = job
    if kind == AUDIO:
        # Loaded here, before the limits, not in the worker: FFmpeg's libraries would add
        # some 100 MB to every document's child (about 0.1 s per recording instead).
        audio.warm()
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = math.ceil(seconds) + 2  # the worker kills on wall time; this catches the rest
    ocr_cpu = math.ceil(seconds + ocr_seconds) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, ocr_cpu + 1))

    def ocr_started() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (ocr_cpu, ocr_cpu + 1))
        out.write(OCR_STARTED)
        out.flush()

    try:
        if kind == AUDIO:
            data, limit = payload
            answer: dict = {"ok": {"seconds": audio.seconds(data, limit)}}
        else:
            filename, data, limits = payload
            got = extract(filename, data, limits, on_ocr=ocr_started)
            answer = {
                "ok": {"text": got.text, "pages": got.pages, "ocr_confidence": got.ocr_confidence}
            }
    except AppError as exc:
        answer = {"refused": exc.code, "message": exc.message, "detail": exc.detail}
    except MemoryError:
        answer = {"memory": True}
    except Exception as exc:  # a parser tripped over the file: the file is what is broken
        answer = {"broken": type(exc).__name__}
    try:
        return json.dumps(answer, ensure_ascii=False).encode("utf-8", "surrogatepass")
    except MemoryError:
        return b'{"memory": true}'


def _fork_one(job: tuple) -> bytes:
    """In the worker: run one job in a fresh child; its answer, or a timeout."""
    seconds, ocr_seconds = job[-2:]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        status = 1
        try:
            # Its own process group, so that a kill takes the tesseract processes with it.
            os.setpgid(0, 0)
            with os.fdopen(write_fd, "wb") as out:
                out.write(_answer(out, job))
            status = 0
        finally:
            os._exit(status)  # no clean-up handlers: they belong to the worker
    os.close(write_fd)
    with contextlib.suppress(OSError):  # also here: the kill may come before the child's
        os.setpgid(pid, pid)
    answer, deadline, ocr = bytearray(), time.monotonic() + seconds, False
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], left)[0]:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return json.dumps({"timeout": True, "ocr": ocr}).encode()
            block = pipe.read(1 << 20)
            if not block:
                break
            answer += block
            if not ocr and answer.startswith(OCR_STARTED):
                del answer[:1]
                ocr, deadline = True, time.monotonic() + ocr_seconds
    _, status = os.waitpid(pid, 0)
    return bytes(answer) or json.dumps({"died": status}).encode()


def _warm_up() -> None:
    """Extract a small file of each kind once in the worker, so that every fork inherits
    parsers that have already built their lazy state (python-docx's template parts, lxml
    parsers, compiled patterns) instead of building it again for each file."""
    import io

    from docx import Document
    from pypdf import PdfWriter

    docx, pdf = io.BytesIO(), io.BytesIO()
    Document().save(docx)
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    writer.write(pdf)
    samples = {"a.docx": docx.getvalue(), "a.pdf": pdf.getvalue(), "a.txt": b"text"}
    samples["a.html"] = b"<p>text</p>"
    for name, data in samples.items():
        # The blank PDF has no text: reading it is all that is wanted.
        with contextlib.suppress(AppError):
            extract(name, data)


def _serve(conn: Connection) -> None:
    """The worker's loop, until the API process closes the pipe."""
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns about every odd file
    _warm_up()
    # Forks share the worker's memory until they write to it; the collector writes to every
    # object it visits, unless they are moved out of its sight first.
    gc.freeze()
    while True:
        try:
            job = pickle.loads(conn.recv_bytes())  # from the API process: trusted
        except (EOFError, OSError):
            return
        conn.send_bytes(_fork_one(job))


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PARSERS)
    return context


class _Worker:
    def __init__(self) -> None:
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None

    def run(self, job: tuple, wait: float) -> dict:
        if self.process is None or not self.process.is_alive():
            self.stop()
            self._start()
        assert self.conn is not None
        try:
            self.conn.send_bytes(pickle.dumps(job))
            if self.conn.poll(wait):
                return json.loads(self.conn.recv_bytes().decode("utf-8", "surrogatepass"))
        except (EOFError, OSError):
            pass
        self.stop()  # the worker itself is stuck or gone; the next job starts another
        return {"died": "worker"}

    def _start(self) -> None:
        context = _context()
        self.conn, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(theirs,), name="advocata-extract", daemon=True
        )
        self.process.start()
        theirs.close()

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.process is not None:
            self.process.join(timeout=2)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self.process = self.conn = None


def _reraise_refusal(answer: dict) -> None:
    """The child refused the file with one of our errors: raise it here as it was raised there."""
    if "refused" in answer:
        cls = REFUSALS.get(answer["refused"], UnreadableFile)
        raise cls(answer["message"], detail=answer["detail"])


class Extractor:
    """`await extractor.extract(filename, data)`: the document's text, read in a child."""

    def __init__(self, settings) -> None:
        self.limits = Limits.from_settings(settings)
        self.timeout = settings.extract_timeout_seconds
        self.ocr_timeout = settings.ocr_timeout_seconds
        self.memory = settings.extract_memory_bytes
        self._workers = [_Worker() for _ in range(max(1, settings.extract_concurrency))]
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        for worker in self._workers:
            self._idle.put_nowait(worker)

    async def _run(self, job: tuple, wait: float) -> dict:
        worker = await self._idle.get()
        task = asyncio.ensure_future(asyncio.to_thread(worker.run, job, wait))
        # The worker is free again when its job is done, even if this request is cancelled.
        task.add_done_callback(lambda _: self._idle.put_nowait(worker))
        return await asyncio.shield(task)

    async def extract(self, filename: str, data: bytes) -> Extracted:
        job = (EXTRACT, (filename, data, self.limits), self.memory, self.timeout, self.ocr_timeout)
        return self._result(await self._run(job, self.timeout + self.ocr_timeout + GRACE_SECONDS))

    async def audio_seconds(self, data: bytes, limit: float) -> float:
        """The recording's length (counted up to `limit`), read in a child."""
        job = (AUDIO, (data, limit), self.memory, self.timeout, 0.0)
        answer = await self._run(job, self.timeout + GRACE_SECONDS)
        if "ok" in answer:
            return answer["ok"]["seconds"]
        _reraise_refusal(answer)
        if "timeout" in answer:
            raise ExtractionTimeout(
                f"Reading the recording took longer than {self.timeout:g} s and was stopped "
                "(EXTRACT_TIMEOUT_SECONDS)",
                detail={"limit": "EXTRACT_TIMEOUT_SECONDS", "max": self.timeout},
            )
        if "memory" in answer:
            raise audio.AudioTooLong(
                "The recording needs more memory to read than allowed "
                f"(EXTRACT_MEMORY_BYTES={self.memory})",
                detail={"limit": "EXTRACT_MEMORY_BYTES", "max": self.memory},
            )
        log.warning("audio probe failed: %s", answer)
        raise UnreadableFile("The recording could not be read: it is damaged or not audio")

    def _result(self, answer: dict) -> Extracted:
        if "ok" in answer:
            ok = answer["ok"]
            return Extracted(ok["text"], [tuple(p) for p in ok["pages"]], ok["ocr_confidence"])
        _reraise_refusal(answer)
        if "timeout" in answer and answer.get("ocr"):
            raise ExtractionTimeout(
                f"Recognising the scanned file took longer than {self.ocr_timeout:g} s and was "
                "stopped; upload fewer pages at a time (OCR_TIMEOUT_SECONDS)",
                detail={"limit": "OCR_TIMEOUT_SECONDS", "max": self.ocr_timeout},
            )
        if "timeout" in answer:
            raise ExtractionTimeout(
                f"Reading the file took longer than {self.timeout:g} s and was stopped; the "
                "file is too complex to process (EXTRACT_TIMEOUT_SECONDS)",
                detail={"limit": "EXTRACT_TIMEOUT_SECONDS", "max": self.timeout},
            )
        if "memory" in answer:
            raise DocumentTooLarge(
                "The document needs more memory to read than allowed "
                f"(EXTRACT_MEMORY_BYTES={self.memory})",
                detail={"limit": "EXTRACT_MEMORY_BYTES", "max": self.memory},
            )
        # A parser raised something unexpected, or the child died of a signal: the kind is
        # for our log, the owner hears that the file could not be read.
        log.warning("extraction failed: %s", answer)
        raise UnreadableFile("The file could not be read: it is damaged or in an unusual format")

    def warm(self) -> None:
        """Start the forkserver (an interpreter importing the parsers, about a second) now
        rather than on the first upload; once per process."""
        from multiprocessing import forkserver

        _context()
        forkserver.ensure_running()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
