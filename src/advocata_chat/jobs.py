"""The ingestion queue: procrastinate, on the service's own PostgreSQL (docs/ingestion.md).

An upload stores the file and defers one job per document (`enqueue`); `work` runs a
worker: any number of them, in `serve` or `advocata-chat worker`, on any machine that
reaches the database. procrastinate takes jobs with `SELECT … FOR UPDATE SKIP LOCKED`,
wakes workers with `LISTEN/NOTIFY`, and records a heartbeat per worker; `work` adds what it
leaves to its users:
- a job whose worker stopped sending heartbeats (killed, its machine gone) is handed back
  to the queue (`_recover`), so another worker retries it within
  INGEST_STALLED_SECONDS plus one heartbeat;
- a document left `queued` or `processing` with no job at all (its enqueue failed with the
  database, or its job was lost) gets a new one;
- voice recordings uploaded for a `voice` frame and never sent are deleted once expired
  (voice.py): the worker is what runs on a schedule, so the housekeeping rides on it.
Each document's job carries the document id as its `lock` (never two runs of it at once)
and `queueing_lock` (never two waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued, JobAborted
from procrastinate.worker import Worker
from sqlalchemy import text

from advocata_chat import db, ingest, voice
from advocata_chat.ingest import Publish, Transient

if TYPE_CHECKING:
    from advocata_chat.runtime import Runtime

log = logging.getLogger(__name__)

TASK = "advocata.index_document"
JOB_HISTORY_HOURS = 24 * 7


def open_queue(url: str) -> procrastinate.App:
    """A procrastinate app on its own small psycopg pool (procrastinate does not share
    SQLAlchemy's); `await queue.open_async()` before use."""
    connector = procrastinate.PsycopgConnector(
        conninfo=db.psycopg_conninfo(url),
        min_size=1,
        max_size=4,
    )
    return procrastinate.App(connector=connector)


async def enqueue(rt: Runtime, document_id: uuid.UUID) -> None:
    key = str(document_id)
    deferrer = rt.queue.configure_task(
        TASK, queue=rt.settings.ingest_queue, lock=key, queueing_lock=key
    )
    with contextlib.suppress(AlreadyEnqueued):  # one is already waiting: it will do
        await deferrer.defer_async(document_id=key)


async def work(rt: Runtime, *, concurrency: int, publish: Publish | None = None) -> None:
    """Run a worker until cancelled; a job cut off by the cancel goes back to the queue."""
    s = rt.settings

    async def index_document(context: procrastinate.JobContext, document_id: str) -> None:
        assert context.job is not None
        attempt = context.job.attempts + 1  # attempts: the runs before this one
        await ingest.index(
            rt,
            uuid.UUID(document_id),
            last_attempt=attempt >= s.ingest_max_attempts,
            publish=publish,
        )

    rt.queue.task(
        name=TASK,
        pass_context=True,
        retry=procrastinate.RetryStrategy(
            max_attempts=s.ingest_max_attempts - 1,  # retries after the first run
            exponential_wait=s.ingest_retry_base_seconds,
            retry_exceptions={Transient, JobAborted},  # JobAborted: cut off by a shutdown
        ),
    )(index_document)
    worker = Worker(
        app=rt.queue,
        queues=[s.ingest_queue],
        concurrency=concurrency,
        install_signal_handlers=False,  # the caller owns the signals (uvicorn, the CLI)
        update_heartbeat_interval=s.ingest_heartbeat_seconds,
        stalled_worker_timeout=s.ingest_stalled_seconds,
        shutdown_graceful_timeout=5,
    )
    # Finished jobs are only history: a week of it is kept (pruned at each worker start).
    # Before the worker's task exists, so a cancel here leaves nothing running.
    with contextlib.suppress(Exception):
        await rt.queue.job_manager.delete_old_jobs(
            nb_hours=JOB_HISTORY_HOURS, queue=s.ingest_queue, include_failed=True
        )
    task = asyncio.create_task(worker.run(), name="ingest-worker")
    try:
        while not task.done():
            try:
                await _recover(rt)
            except Exception as exc:
                if not db_down(exc):
                    raise
                log.warning("the ingestion worker waits for the database")
            await asyncio.wait({task}, timeout=s.ingest_heartbeat_seconds)
        await task  # it stopped by itself: say why
    finally:
        # A stop request rather than a cancel: a cancel that lands while procrastinate
        # registers the worker can be swallowed, and the worker then runs on. A request
        # made before its start is reset by the start, hence the loop.
        while not task.done():
            worker.stop()
            await asyncio.wait({task}, timeout=1)
        with contextlib.suppress(BaseException):
            await task


@contextlib.asynccontextmanager
async def running(
    rt: Runtime, *, concurrency: int, publish: Publish | None = None
) -> AsyncIterator[asyncio.Task]:
    """A worker in this process for the duration of the block (`serve`, `ingest`,
    `reindex`)."""
    task = asyncio.create_task(work(rt, concurrency=concurrency, publish=publish))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


def db_down(exc: BaseException) -> bool:
    from advocata_chat.errors import is_database_down

    return is_database_down(exc)


# Documents waiting or in progress with no job to finish them, oldest first.
_ORPHANS = """
SELECT d.id FROM documents d
WHERE d.status IN ('queued', 'processing')
  AND d.updated_at < now() - make_interval(secs => :age)
  AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                  WHERE j.lock = d.id::text AND j.status IN ('todo', 'doing'))
ORDER BY d.updated_at
LIMIT 100
"""


async def _recover(rt: Runtime) -> None:
    s = rt.settings
    manager = rt.queue.job_manager
    for job in await manager.get_stalled_jobs(
        queue=s.ingest_queue, task_name=TASK, seconds_since_heartbeat=s.ingest_stalled_seconds
    ):
        log.warning("job %s of a worker that stopped answering goes back to the queue", job.id)
        # Another worker may have handed it back already; then this one is refused.
        with contextlib.suppress(Exception):
            await manager.retry_job(job)
    async with rt.engine.connect() as conn:
        rows = await conn.execute(text(_ORPHANS), {"age": s.ingest_stalled_seconds})
        orphans = [r.id for r in rows]
    for document_id in orphans:
        log.warning("document %s had no job; queued again", document_id)
        await enqueue(rt, document_id)
    async with rt.sessions.begin() as session:
        await voice.delete_expired(session)
