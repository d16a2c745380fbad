"""What the app holds while it runs: settings, database, models, store and prompts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import procrastinate
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_postgres import PGVectorStore
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from advocata_chat import db
from advocata_chat.config import Settings
from advocata_chat.jobs import open_queue
from advocata_chat.llm import build_chat_model, build_embeddings, min_similarity
from advocata_chat.offline import LocalEmbeddings, OfflineChatModel
from advocata_chat.prompts import PromptError, PromptSet
from advocata_chat.retrieval import SearchParams
from advocata_chat.sandbox import Extractor
from advocata_chat.store import open_store
from advocata_chat.templates import Template, load_templates

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker
    llm: BaseChatModel
    prompts: PromptSet  # a Mapping: rt.prompts["chat"].template
    embeddings: Embeddings  # questions and the offline answerer's sentences
    embedding_model: str
    store: PGVectorStore
    search: SearchParams
    index_embeddings: Embeddings  # documents being indexed: the same vectors, its own lane
    extractor: Extractor  # `await rt.extractor.extract(filename, data)`, in a child process
    queue: procrastinate.App  # the ingestion queue (jobs.py)
    templates: dict[str, Template] = field(default_factory=dict)
    tasks: set[asyncio.Task] = field(default_factory=set)
    # Wall-clock seconds for rate windows and token expiry on open sockets; tests set their
    # own, so that no assertion depends on when it runs.
    clock: Callable[[], float] = time.time

    @property
    def offline(self) -> bool:
        return isinstance(self.llm, OfflineChatModel)

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        """Run work that must outlive the request (indexing, a streamed turn); `close` waits
        for it briefly. Keeping the task referenced stops it being garbage-collected."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        # Give background indexing a moment; what is cut off resumes at the next start.
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=5)
            for task in pending:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self.extractor.close()
        await self.queue.close_async()
        await self.engine.dispose()


async def start_runtime(
    settings: Settings,
    *,
    llm: BaseChatModel | None = None,
    embeddings: tuple[Embeddings, str, int] | None = None,
) -> Runtime:
    # Prompts first: a broken prompt file should stop the start before anything else.
    # In development, edits are picked up on the next lookup (see PromptSet).
    try:
        prompts = PromptSet(settings.prompts_dir, live=settings.advocata_env == "development")
    except PromptError as e:
        log.error("cannot start: the prompts in %s do not load: %s", settings.prompts_dir, e)
        raise
    templates = load_templates(settings.prompts_dir / "templates")
    extractor = Extractor(settings)
    await asyncio.to_thread(extractor.warm)
    url = await asyncio.to_thread(db.resolve_database_url, settings)
    if settings.auto_migrate:
        await asyncio.to_thread(db.migrate, url)
    engine = db.make_engine(url, settings)
    queue = open_queue(url)
    try:
        embedder, model, dims = embeddings or await asyncio.to_thread(build_embeddings, settings)
        store = await open_store(engine, embedder, model=model, dims=dims)
        await queue.open_async()
    except BaseException:
        await engine.dispose()
        raise
    if llm is None:
        llm = build_chat_model(settings)
        if isinstance(llm, OfflineChatModel):
            llm.embeddings = embedder
            llm.threshold = settings.offline_abstain_threshold
            llm.other_document = settings.offline_other_document
    s = settings
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=db.make_sessions(engine),
        llm=llm,
        prompts=prompts,
        templates=templates,
        embeddings=embedder,
        # A local encoder runs one call at a time: indexing gets its own, so a chat turn
        # does not wait behind a document's batches (bench.ingest, in-API).
        index_embeddings=embedder.sibling() if isinstance(embedder, LocalEmbeddings) else embedder,
        embedding_model=model,
        store=store,
        extractor=extractor,
        queue=queue,
        search=SearchParams(
            top_k=s.rag_top_k,
            candidates=s.rag_candidates,
            context_k=s.rag_context_chunks,
            min_similarity=min_similarity(s, model),
            rrf_k=s.rag_rrf_k,
            vector_weight=s.rag_vector_weight,
            text_weight=s.rag_text_weight,
            diversify=s.rag_diversify,
        ),
    )
