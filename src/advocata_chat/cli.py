"""The `advocata-chat` command line.

A mistake a user can fix (an invalid setting, an index built by another embedder, a database
that does not answer) ends the command with one `error:` line saying what to change, and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn
from urllib.parse import urlsplit

import typer

from advocata_chat.config import get_settings

if TYPE_CHECKING:
    from pydantic import ValidationError

    from advocata_chat.config import Settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Advocata Chat service",
)
log = logging.getLogger("advocata_chat.serve")  # not __name__: `python -m` makes it __main__

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Local state folder (the embedded PostgreSQL lives in DATA_DIR/pgdata); "
        "default: ADVOCATA_DATA_DIR",
        file_okay=False,
    ),
]
SECRETS = ("SECRET", "KEY", "PASSWORD", "DATABASE_URL")  # values never echoed back


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_problems(error: ValidationError) -> list[str]:
    """One sentence per invalid setting: which variable, where it came from, what to do."""
    lines = []
    for e in error.errors():
        reason = e["msg"].removeprefix("Value error, ")
        if not e["loc"]:  # a rule across settings (the model validator) names them itself
            lines.append(f"{reason} (set in .env or the environment; see .env.example)")
            continue
        name = str(e["loc"][0]).upper()
        where = (
            "the environment"
            if any(k.upper() == name for k in os.environ)
            else f"{Path('.env').resolve()}"
        )
        value = "" if any(s in name for s in SECRETS) else f"={e.get('input')!r}"
        lines.append(
            f"{name}{value} in {where} is invalid: {reason}. Fix or remove it "
            "(.env.example lists every setting with its allowed values)"
        )
    return lines


def _settings(data_dir: Path | None = None) -> Settings:
    from pydantic import ValidationError

    try:
        settings = get_settings()
    except ValidationError as e:
        for line in settings_problems(e):
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None
    if data_dir is not None:
        settings = settings.model_copy(update={"advocata_data_dir": data_dir})
    return settings


def public_url(url: str) -> str:
    """A database URL fit for a log line: no password."""
    from sqlalchemy import URL, make_url

    u = make_url(url)  # (URL.set(password=None) would keep the password)
    bare = URL.create(u.drivername, u.username, None, u.host, u.port, u.database, u.query)
    return bare.render_as_string(hide_password=False)


@contextlib.contextmanager
def _actionable(settings: Settings) -> Iterator[None]:
    """Turn the failures a user can fix into one line and exit 2."""
    import openai

    from advocata_chat.errors import is_database_down
    from advocata_chat.store import EmbedderMismatch

    try:
        yield
    except EmbedderMismatch as e:
        _fail(str(e))
    except openai.OpenAIError as e:  # probing an embedder's dimension at start-up
        where = settings.openai_base_url or "api.openai.com"
        _fail(
            f"the model provider at {where} failed: {e}. Check OPENAI_BASE_URL and "
            "OPENAI_API_KEY, or set RAG_EMBEDDING_DIMENSIONS so no probe is needed"
        )
    except Exception as e:
        if not is_database_down(e):
            raise
        where = public_url(settings.database_url) if settings.database_url else "(embedded)"
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        _fail(
            f"cannot reach the database {where}: {reason}. Check DATABASE_URL, or unset it "
            "to use the embedded PostgreSQL"
        )


def _database_url(settings: Settings) -> str:
    from advocata_chat import db

    try:
        return db.resolve_database_url(settings)
    except ValueError as e:  # not a PostgreSQL URL
        _fail(f"{e}. Fix DATABASE_URL in .env or the environment, or unset it")


def _quiet_logs() -> None:
    """Command-line tools print their own output; only warnings from the service."""
    from advocata_chat import logs

    logs.configure("text", "warning")


def running_on(
    settings: Settings, *, embedded: bool, embedder: str, dims: int, host: str, port: int
) -> list[str]:
    """What `serve` tells at start-up, one line per part."""
    from advocata_chat import db

    if embedded:
        database = f"embedded PostgreSQL in {db.embedded_pgdata(settings.advocata_data_dir)}"
    else:
        database = public_url(settings.database_url or "")
    if settings.uses_openai:
        where = urlsplit(settings.openai_base_url or "https://api.openai.com/v1")
        server = where.hostname + (f":{where.port}" if where.port else "")
        model = f"{settings.openai_model} at {server}"
        if settings.openai_fallback_model:
            model += f" (fallback {settings.openai_fallback_model})"
    else:
        model = (
            "offline (extractive answers quoted from the user's documents, bills 0 tokens; "
            "set OPENAI_API_KEY or OPENAI_BASE_URL for a provider)"
        )
    # A wildcard address is not something to open in a browser: this machine answers on it.
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    base = f"http://{shown}:{port}"
    return [
        f"database: {database}",
        f"chat model: {model}",
        f"embedder: {embedder}, {dims} dimensions",
        f"prompts: {settings.prompts_dir.resolve()}",
        f"docs: {base}/docs",
        f"playground: {base}/playground",
    ]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes")] = 1,
    data_dir: DataDir = None,
) -> None:
    """Run the API. Without DATABASE_URL, an embedded PostgreSQL is started first."""
    import asyncio

    import uvicorn

    from advocata_chat import logs
    from advocata_chat.llm import build_embeddings
    from advocata_chat.runtime import start_runtime

    settings = _settings(data_dir)
    _check_prompts(settings.prompts_dir)
    embedded = not settings.database_url
    url = _database_url(settings)

    async def preflight() -> tuple[str, int]:
        # Everything the app's start-up does (migrations, the index check), here, so that a
        # mistake ends with one line instead of a failed lifespan's traceback.
        embedder, name, dims = await asyncio.to_thread(build_embeddings, settings)
        rt = await start_runtime(settings, embeddings=(embedder, name, dims))
        await rt.close()
        return name, dims

    with _actionable(settings):
        embedder, dims = asyncio.run(preflight())
    # Worker processes read the environment, so they attach to the same database.
    os.environ["DATABASE_URL"] = url
    os.environ["AUTO_MIGRATE"] = "false"
    get_settings.cache_clear()
    # Configured only now: the embedded server's and alembic's chatter would bury these lines.
    logs.configure(settings.log_format, settings.log_level)
    for line in running_on(
        settings, embedded=embedded, embedder=embedder, dims=dims, host=host, port=port
    ):
        log.info(line)
    # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler that
    # kills the process before atexit runs, leaving the embedded PostgreSQL running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "advocata_chat.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,  # logs.configure above: JSON lines with request ids
        # uvicorn would read a frame of up to 16 MB into memory before our own check sees it;
        # a little over MAX_WS_FRAME_BYTES still lets that check answer with an error frame.
        ws_max_size=settings.max_ws_frame_bytes * 2,
    )


def _check_prompts(directory: Path, expected: dict | None = None):
    """Load a prompts folder or exit with the reason, before anything slow starts."""
    from advocata_chat.prompts import PromptError, PromptSet

    try:
        return PromptSet(directory, expected=expected)
    except PromptError as e:
        typer.echo(f"error: the prompts in {directory} do not load: {e}", err=True)
        raise typer.Exit(2) from None


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
    data_dir: DataDir = None,
) -> None:
    """Apply database migrations (alembic upgrade)."""
    from advocata_chat import db

    settings = _settings(data_dir)
    with _actionable(settings):
        db.migrate(_database_url(settings), revision)
    typer.echo(f"database migrated to {revision}", err=True)


@app.command()
def token(
    user: Annotated[uuid.UUID, typer.Option("--user", help="User UUID for the `sub` claim")],
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds")] = None,
    role: Annotated[str | None, typer.Option(help="Optional `role` claim")] = None,
) -> None:
    """Mint a development token (HS256 with JWT_SECRET). Prints only the token."""
    from advocata_chat.auth import mint_token

    extra = {"role": role} if role else None
    try:
        token = mint_token(_settings(), user_id=user, ttl_seconds=ttl, extra=extra)
    except ValueError as e:  # an RS256-only set-up: tokens come from the platform
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(token)


@app.command()
def ingest(
    user: Annotated[uuid.UUID, typer.Option("--user", help="Owner of the documents")],
    paths: Annotated[list[Path], typer.Argument(help="Files to upload", exists=True)],
    title: Annotated[
        str | None, typer.Option(help="Document title (one file only); default: the file name")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Upload and index documents for a user, as the API does, with a progress bar."""
    if title is not None and len(paths) != 1:
        raise typer.BadParameter("a title names one document: give exactly one file")
    if title is not None and not title.strip():
        raise typer.BadParameter("the title is empty", param_hint="--title")
    settings = _settings(data_dir)
    _quiet_logs()
    import asyncio

    from rich.progress import Progress

    from advocata_chat import documents, jobs
    from advocata_chat.errors import AppError
    from advocata_chat.runtime import start_runtime

    async def main() -> int:
        rt = await start_runtime(settings)
        try:
            # This process works on the queue too, beside any other worker.
            async with jobs.running(rt, concurrency=settings.ingest_concurrency):
                return await upload_all(rt)
        finally:
            await rt.close()

    async def upload_all(rt) -> int:
        failed = 0
        with Progress() as progress:
            bar = progress.add_task("indexing", total=len(paths))
            for path in paths:
                progress.update(bar, description=path.name)
                try:
                    doc, created = await documents.upload(
                        rt,
                        user_id=user,
                        filename=path.name,
                        data=path.read_bytes(),
                        title=title.strip() if title else None,
                        wait=True,
                    )
                    note = "" if created else " (already uploaded)"
                    progress.console.print(
                        f"{path.name}: {doc.status}, {doc.chunk_count} chunks, id {doc.id}, "
                        f"title «{doc.title}»{note}"
                    )
                    failed += doc.status != "ready"
                except AppError as e:
                    progress.console.print(f"{path.name}: refused: {e.message}")
                    failed += 1
                progress.advance(bar)
        return failed

    with _actionable(settings):
        failed = asyncio.run(main())
    raise typer.Exit(1 if failed else 0)


@app.command()
def reindex(
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Work on the jobs here until every document is indexed (beside any other "
            "workers); --no-wait only queues them for `advocata-chat worker` processes",
        ),
    ] = True,
    data_dir: DataDir = None,
) -> None:
    """Rebuild the chunk index with the configured embedder, from the stored document text:
    one job per document on the ingestion queue."""
    settings = _settings(data_dir)
    _quiet_logs()
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from advocata_chat import db, documents, jobs, store
    from advocata_chat.runtime import start_runtime

    async def main() -> tuple[int, int, str]:
        url = _database_url(settings)
        if settings.auto_migrate:
            await asyncio.to_thread(db.migrate, url)
        engine = db.make_engine(url, settings)
        await store.drop_store(engine)
        await engine.dispose()
        rt = await start_runtime(settings.model_copy(update={"auto_migrate": False}))
        try:
            ids = await documents.reindex_all(rt)
            if not wait:
                return len(ids), 0, rt.embedding_model
            columns = ("reindexing", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            async with jobs.running(rt, concurrency=settings.ingest_concurrency):
                with Progress(*columns) as progress:
                    bar = progress.add_task("reindexing", total=len(ids))
                    while True:
                        n = await documents.counts(rt, ids)
                        done = n.get("ready", 0) + n.get("failed", 0)
                        progress.update(bar, completed=done)
                        if done >= len(ids):
                            break
                        await asyncio.sleep(0.2)
            return len(ids), n.get("failed", 0), rt.embedding_model
        finally:
            await rt.close()

    with _actionable(settings):
        count, failed, model = asyncio.run(main())
    if not wait:
        typer.echo(f"queued {count} documents for reindexing with {model}", err=True)
        return
    typer.echo(f"reindexed {count} documents with {model}", err=True)
    if failed:
        typer.echo(f"error: {failed} documents failed; see their `error`", err=True)
        raise typer.Exit(1)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Documents indexed at once; default: INGEST_CONCURRENCY"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Index queued documents until stopped (Ctrl-C or SIGTERM), beside any other workers
    on any machine that shares the database."""
    import asyncio
    import signal

    from advocata_chat import db, jobs, logs
    from advocata_chat.frames import document_frame, document_topic
    from advocata_chat.hub import Hub
    from advocata_chat.runtime import start_runtime

    settings = _settings(data_dir)
    n = concurrency or settings.ingest_concurrency

    async def main() -> None:
        rt = await start_runtime(settings)
        # `document` frames reach the owner's sockets in the API processes through the hub.
        hub = Hub(db.psycopg_conninfo(settings.database_url or ""))
        await hub.start()

        async def publish(doc) -> None:
            hub.publish(document_topic(doc.user_id), document_frame(doc))

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with jobs.running(rt, concurrency=n, publish=publish) as task:
                log.info("worker: %d at a time from queue %s", n, settings.ingest_queue)
                await asyncio.wait(
                    {task, asyncio.create_task(stop.wait())}, return_when="FIRST_COMPLETED"
                )
                if task.done():
                    task.result()  # it stopped by itself: say why
        finally:
            await hub.stop()
            await rt.close()

    logs.configure(settings.log_format, settings.log_level)
    with _actionable(settings):
        asyncio.run(main())


@app.command("eval")
def evaluate(
    set_dirs: Annotated[
        list[Path],
        typer.Option("--set", help="Evaluation set folder (docs/ + questions.jsonl); repeatable"),
    ],
    k: Annotated[int, typer.Option(help="Retrieval depth for hit@k")] = 5,
    prompts_dir: Annotated[
        Path | None,
        typer.Option(help="Also evaluate this prompts folder; prints both side by side"),
    ] = None,
    cross_validation: Annotated[
        bool, typer.Option("--cv/--no-cv", help="Cross-validate fusion and abstention")
    ] = True,
    data_dir: DataDir = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="One line per question")] = False,
) -> None:
    """Score retrieval, citations, answers, abstention and cross-user leakage, per kind of
    question, beside the naive baselines (vector, BM25, RRF over 1000/200 chunks)."""
    _quiet_logs()
    import asyncio

    from advocata_chat.evaluation import (
        EvalSetError,
        by_kind_table,
        load_sets,
        print_results,
        run,
        side_by_side,
        summarize,
        won_lost_table,
    )

    try:
        load_sets(set_dirs)  # refuse a wrong folder before the slow part starts
    except EvalSetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    settings = _settings(data_dir)
    alternative = None
    if prompts_dir is not None:
        # Both folders must load, and the alternative must fill the same variables, before
        # the slow part starts.
        current = _check_prompts(settings.prompts_dir)
        alternative = _check_prompts(prompts_dir, {n: p.variables for n, p in current.items()})
    with _actionable(settings):
        report = asyncio.run(
            run(set_dirs, settings, k=k, alternative=alternative, cross_validation=cross_validation)
        )
    if verbose:
        for label, results in report.results.items():
            print_results(label, results)
    figures = {label: summarize(results) for label, results in report.results.items()}
    typer.echo(f"sets: {', '.join(str(d) for d in set_dirs)}; {len(report.questions)} questions")
    typer.echo("\nBy kind (naive baselines: top 5 over RecursiveCharacterTextSplitter 1000/200):")
    typer.echo(by_kind_table(report))
    typer.echo("\nhit@k against each baseline, questions won / lost (same questions):")
    typer.echo(won_lost_table(report))
    typer.echo("")
    if alternative is None:
        only = figures["current"]
        width = max(len(name) for name in only)
        for name, value in only.items():
            typer.echo(f"{name:<{width}}  {value}")
    else:
        typer.echo(f"current:     {settings.prompts_dir}")
        typer.echo(f"alternative: {prompts_dir}")
        typer.echo(side_by_side(figures))
        typer.echo("(* differs)")
    for name, cv in report.cv.items():
        typer.echo(f"\ncross-validated ({name}, 5 folds, held-out figures):")
        for key, value in cv.items():
            typer.echo(f"  {key}: {value}")
    if any(f["leakage"] for f in figures.values()):
        typer.echo("FAIL: an answer cited a document its asker does not own", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
