"""The upload-amplification files of issue 13 against a real server: time, CPU and memory.

    python -m bench.uploads [--code DIR] [--cap 150]

Starts `advocata-chat serve` (the code in DIR/src with `--code`, e.g. an older checkout made
with `git archive`, to measure before and after on the same machine) on a throwaway
database, and uploads each file once to a fresh server: a DOCX whose 1 MB document.xml is
one paragraph repeated, a DOCX holding 300 MB of zeros, a PDF of 20,000 pages, a PDF whose
100 pages share one 4 MB stream, and a PDF with an 80 MB stream. For each: the response,
how long until the document is `ready`/`failed` (capped at `--cap` seconds), the server's
CPU seconds (its process and children), and its memory (RSS of the API process before, at
the peak and after; the peak of its children). Then what the extraction child costs an
ordinary file: extraction alone in-process and through the child, and the time to answer
an upload (the previous upload's indexing runs meanwhile, as it would on a server).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil

from bench.common import free_port, fresh_database, machine, server_url, table, token_for
from tests import bombs

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


class Served:
    """The real CLI server; the code from `code/src` when given."""

    def __init__(self, database_url: str, code: Path | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "AUTO_MIGRATE": "false",
            "RATE_UPLOADS_PER_HOUR": "0",
            "LOG_LEVEL": "warning",
        }
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            env.pop(name, None)
        if code is not None:
            env["PYTHONPATH"] = f"{code / 'src'}:{ROOT}"
        self.log = tempfile.NamedTemporaryFile(prefix="bench-uploads-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "advocata_chat.cli", "serve", "--port", str(self.port)],
            env=env,
            cwd=tempfile.gettempdir(),
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def rss(self) -> tuple[float, float]:
        """(API process, its children) resident memory, MB."""
        children = sum(_rss(c) for c in self.ps.children(recursive=True))
        return _rss(self.ps) / MB, children / MB

    def cpu(self) -> float:
        total = 0.0
        for p in [self.ps, *self.ps.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        for child in self.ps.children(recursive=True):
            child.kill()
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.Error:
        return 0


class Peak(threading.Thread):
    """Samples the server's memory every 50 ms while a file is being handled."""

    def __init__(self, server: Served) -> None:
        super().__init__(daemon=True)
        self.server, self.api, self.children, self.done = server, 0.0, 0.0, False

    def run(self) -> None:
        while not self.done:
            api, children = self.server.rss()
            self.api, self.children = max(self.api, api), max(self.children, children)
            time.sleep(0.05)


def upload(server: Served, name: str, data: bytes, cap: float) -> list:
    headers = {"Authorization": f"Bearer {token_for(uuid.uuid4())}"}
    before_api, _ = server.rss()
    cpu = server.cpu()
    peak = Peak(server)
    peak.start()
    started = time.monotonic()
    outcome, answered, total, chunks = "", float("nan"), float("nan"), ""
    try:
        r = httpx.post(
            f"{server.url}/api/v1/documents",
            files={"file": (name, data)},
            headers=headers,
            timeout=cap,
        )
        answered = time.monotonic() - started
        body = r.json()
        outcome = f"{r.status_code} {body.get('code') or body.get('status')}"
        if r.status_code in (200, 201):
            while time.monotonic() - started < cap:
                doc = httpx.get(
                    f"{server.url}/api/v1/documents/{body['id']}", headers=headers, timeout=cap
                ).json()
                if doc["status"] != "processing":
                    total, chunks = time.monotonic() - started, doc["chunk_count"]
                    outcome += f" → {doc['status']}"
                    break
                time.sleep(0.5)
            else:
                outcome += f" → still indexing at {cap:.0f} s"
        else:
            total = answered
    except httpx.TimeoutException:
        outcome = f"no answer in {cap:.0f} s"
    peak.done = True
    peak.join()
    time.sleep(2)  # what the process keeps once the file is handled
    after_api, _ = server.rss()
    alive = "yes"
    try:
        httpx.get(f"{server.url}/healthz", timeout=5).raise_for_status()
    except httpx.HTTPError:
        alive = "no"
    return [
        name,
        f"{len(data) / 1024:,.0f} KB",
        outcome,
        answered,
        total,
        chunks,
        server.cpu() - cpu,
        f"{before_api:.0f} / {peak.api:.0f} / {after_api:.0f}",
        f"{peak.children:.0f}",
        alive,
    ]


def ordinary(server: Served) -> list[list]:
    """Median time to answer an upload of ordinary files (extraction + store, no wait)."""
    from tests.test_documents import CONTRACT, pdf_bytes

    headers = {"Authorization": f"Bearer {token_for(uuid.uuid4())}"}
    makers = {
        "contract.txt (10 KB)": lambda n: f"{n}\n{CONTRACT * 30}".encode(),
        "contract.docx (40 KB)": lambda n: bombs.docx([str(n), *CONTRACT.splitlines() * 30]),
        "contract.pdf (20 pages)": lambda n: pdf_bytes([f"{n}\n{CONTRACT * 3}"] * 20),
    }
    rows = []
    for name, make in makers.items():
        times = []
        for n in range(7):
            data = make(f"{uuid.uuid4()} {n}")
            started = time.monotonic()
            r = httpx.post(
                f"{server.url}/api/v1/documents",
                files={"file": (name.split()[0], data)},
                headers=headers,
                timeout=60,
            )
            times.append(time.monotonic() - started)
            assert r.status_code == 201, r.text
        rows.append([name, statistics.median(times) * 1000, min(times) * 1000])
    return rows


def extraction_alone() -> list[list]:
    """What the child adds to extracting an ordinary file: in this process, and through
    the `Extractor` (a fork per file), median of 7, the forkserver already running."""
    import asyncio

    from advocata_chat.config import Settings
    from advocata_chat.extract import extract
    from advocata_chat.sandbox import Extractor
    from tests.test_documents import CONTRACT, pdf_bytes

    files = {
        "contract.txt (10 KB)": ("a.txt", (CONTRACT * 30).encode()),
        "contract.docx (40 KB)": ("a.docx", bombs.docx(CONTRACT.splitlines() * 30)),
        "contract.pdf (20 pages)": ("a.pdf", pdf_bytes([CONTRACT * 3] * 20)),
    }

    async def measure() -> list[list]:
        extractor = Extractor(Settings(_env_file=None))
        extractor.warm()
        await extractor.extract("warm.txt", b"warm up")
        rows = []
        for label, (name, data) in files.items():
            here, child = [], []
            for _ in range(7):
                started = time.perf_counter()
                extract(name, data)
                here.append(time.perf_counter() - started)
                started = time.perf_counter()
                await extractor.extract(name, data)
                child.append(time.perf_counter() - started)
            here_ms, child_ms = statistics.median(here) * 1000, statistics.median(child) * 1000
            rows.append([label, here_ms, child_ms, child_ms - here_ms])
        extractor.close()
        return rows

    return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", type=Path, help="a checkout whose src/ the server runs")
    parser.add_argument("--cap", type=float, default=150, help="seconds to wait per file")
    args = parser.parse_args()
    label = f"code from {args.code}" if args.code else "this checkout"
    print(f"machine: {machine()}; {label}", flush=True)
    files = [
        ("body.docx", bombs.docx_with_big_body(1_000_000)),
        ("zeros.docx", bombs.docx_with_zero_part(300)),
        ("pages.pdf", bombs.pdf_many_pages(20_000)),
        ("shared.pdf", bombs.pdf_shared_stream(100, 4_000_000)),
        ("huge-stream.pdf", bombs.pdf_one_huge_stream(80_000_000)),
    ]
    rows = []
    with server_url() as url:
        database = fresh_database(url, "uploads")
        for name, data in files:
            server = Served(database, args.code)
            try:
                rows.append(upload(server, name, data, args.cap))
            finally:
                server.stop()
        table(
            f"Issue 13 upload files, one fresh server each ({label})",
            [
                "file",
                "size",
                "outcome",
                "answered, s",
                "ready/failed, s",
                "chunks",
                "server CPU, s",
                "API RSS before / peak / after, MB",
                "children peak, MB",
                "answers after",
            ],
            rows,
        )
        if args.code is None:
            table(
                "Extracting ordinary files: in-process and in a child (this checkout)",
                ["file", "in-process, ms", "child, ms", "added, ms"],
                extraction_alone(),
            )
        server = Served(database, args.code)
        try:
            table(
                f"Ordinary uploads, time to answer ({label})",
                ["file", "median, ms", "best, ms"],
                ordinary(server),
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
