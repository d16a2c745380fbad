"""A real `advocata-chat worker` killed with SIGKILL mid-job: another worker process takes
the job over within a bounded time, and the document ends `ready` with each chunk once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from sqlalchemy import text

from advocata_chat.config import Settings
from tests.test_queue import app_client, chunk_counts, job_of, long_text, post, until

HEARTBEAT, STALLED = 1, 3
OWN = {name.upper() for name in Settings.model_fields}


class Worker:
    def __init__(self, database_url: str, queue: str) -> None:
        env = {k: v for k, v in os.environ.items() if k.upper() not in OWN}
        env |= {
            "DATABASE_URL": database_url,
            "AUTO_MIGRATE": "false",
            "INGEST_QUEUE": queue,
            "INGEST_HEARTBEAT_SECONDS": str(HEARTBEAT),
            "INGEST_STALLED_SECONDS": str(STALLED),
            # Short chunks: the real embedder gets through a run in seconds, not minutes.
            "RAG_CHUNK_SIZE": "300",
            "RAG_CHUNK_OVERLAP": "50",
            "LOG_FORMAT": "text",
        }
        self.log = tempfile.NamedTemporaryFile(prefix="advocata-worker-", suffix=".log")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "advocata_chat.cli", "worker", "--concurrency", "1"],
            env=env,
            cwd=tempfile.gettempdir(),  # no .env of the developer's
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def logs(self) -> str:
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.mark.timeout(300)
async def test_a_worker_killed_mid_job_is_replaced_and_the_document_is_ready_once(
    make_settings, database_url, auth, alice
):
    h = auth(alice)
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    # The API side only: no worker in this process, the two below do the work.
    async with app_client(make_settings, ingest_worker_in_api=False, ingest_queue=queue) as api:
        doc = await post(api, h, "long.txt", long_text(120) + f"\n{uuid.uuid4()}".encode())
        first = Worker(database_url, queue)
        second = None
        try:
            # The first worker is part-way through embedding.
            await until(
                api, h, doc["id"], lambda d: (d["progress"] or {}).get("done", 0) >= 1, wait=120
            )
            second = Worker(database_url, queue)
            await asyncio.sleep(2)  # let it start; it finds nothing to do while the first lives
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait()
            killed = time.monotonic()
            ready = await until(api, h, doc["id"], lambda d: d["status"] == "ready", wait=120)
            took = time.monotonic() - killed
            assert ready["error"] is None, ready
            n = ready["chunk_count"]
            assert n > 32 and await chunk_counts(api, doc["id"]) == (n, n)
            # One run killed and handed back, one finished.
            assert await job_of(api, doc["id"]) == {"status": "succeeded", "attempts": 2}
            assert "stopped answering goes back to the queue" in second.logs(), second.logs()
            # Bounded: taken for dead after STALLED s, noticed within a heartbeat, run again.
            assert took < 90, took
            async with api.app.state.runtime.engine.connect() as conn:
                docs = await conn.scalar(
                    text("SELECT count(*) FROM documents WHERE user_id = :u"), {"u": alice}
                )
            assert docs == 1
        finally:
            if first.proc.poll() is None:
                first.proc.kill()
            first.stop()
            if second is not None:
                # SIGTERM: the idle worker stops cleanly.
                assert second.stop() == 0, second.logs()[-3000:]


def test_worker_rejects_a_concurrency_below_one():
    run = subprocess.run(
        [sys.executable, "-m", "advocata_chat.cli", "worker", "--concurrency", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "concurrency" in run.stderr
