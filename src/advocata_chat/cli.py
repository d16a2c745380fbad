"""The `advocata-chat` command line."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Annotated

import typer

from advocata_chat.config import get_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Advocata Chat service",
)


def _quiet_logs() -> None:
    """Command-line tools print their own output; only warnings from the service."""
    from advocata_chat import logs

    logs.configure("text", "warning")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes")] = 1,
) -> None:
    """Run the API. Without DATABASE_URL, an embedded PostgreSQL is started first."""
    import uvicorn

    from advocata_chat import db

    settings = get_settings()
    _check_prompts(settings.prompts_dir)
    url = db.resolve_database_url(settings)
    # Worker processes read the environment, so they attach to the same database.
    os.environ["DATABASE_URL"] = url
    if settings.auto_migrate:
        db.migrate(url)
    os.environ["AUTO_MIGRATE"] = "false"
    get_settings.cache_clear()
    from advocata_chat import logs

    logs.configure(settings.log_format, settings.log_level)
    uvicorn.run(
        "advocata_chat.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,  # logs.configure below: JSON lines with request ids
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
) -> None:
    """Apply database migrations (alembic upgrade)."""
    from advocata_chat import db

    db.migrate(db.resolve_database_url(get_settings()), revision)
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
    typer.echo(mint_token(get_settings(), user_id=user, ttl_seconds=ttl, extra=extra))


@app.command()
def ingest(
    user: Annotated[uuid.UUID, typer.Option("--user", help="Owner of the documents")],
    paths: Annotated[list[Path], typer.Argument(help="Files to upload", exists=True)],
) -> None:
    """Upload and index documents for a user, as the API does, with a progress bar."""
    _quiet_logs()
    import asyncio

    from rich.progress import Progress

    from advocata_chat import documents
    from advocata_chat.errors import AppError
    from advocata_chat.runtime import start_runtime

    async def main() -> int:
        rt = await start_runtime(get_settings())
        failed = 0
        try:
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
                            wait=True,
                        )
                        note = "" if created else " (already uploaded)"
                        progress.console.print(
                            f"{path.name}: {doc.status}, {doc.chunk_count} chunks, id {doc.id}"
                            f"{note}"
                        )
                        failed += doc.status != "ready"
                    except AppError as e:
                        progress.console.print(f"{path.name}: refused: {e.message}")
                        failed += 1
                    progress.advance(bar)
        finally:
            await rt.close()
        return failed

    raise typer.Exit(1 if asyncio.run(main()) else 0)


@app.command()
def reindex() -> None:
    """Rebuild the chunk index with the configured embedder, from the stored document text."""
    _quiet_logs()
    import asyncio

    from advocata_chat import documents, store
    from advocata_chat.runtime import start_runtime

    async def main() -> None:
        settings = get_settings()
        from advocata_chat import db

        url = db.resolve_database_url(settings)
        if settings.auto_migrate:
            db.migrate(url)
        engine = db.make_engine(url, settings)
        await store.drop_store(engine)
        await engine.dispose()
        rt = await start_runtime(settings.model_copy(update={"auto_migrate": False}))
        try:
            count = await documents.reindex_all(rt)
        finally:
            await rt.close()
        typer.echo(f"reindexed {count} documents with {rt.embedding_model}", err=True)

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
    )

    try:
        load_sets(set_dirs)  # refuse a wrong folder before the slow part starts
    except EvalSetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    settings = get_settings()
    alternative = None
    if prompts_dir is not None:
        # Both folders must load, and the alternative must fill the same variables, before
        # the slow part starts.
        current = _check_prompts(settings.prompts_dir)
        alternative = _check_prompts(prompts_dir, {n: p.variables for n, p in current.items()})
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
