"""Shared fixtures: one real PostgreSQL per test session, migrated once.

Tests isolate by giving every test its own random users, because every query in the
service is scoped by user. That keeps tests able to exercise real concurrency, several
connections and several processes, which a rolled-back shared transaction cannot.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from httpx_ws.transport import ASGIWebSocketTransport
from langchain_core.language_models import BaseChatModel
from sqlalchemy import make_url

from advocata_chat import db
from advocata_chat.app import create_app
from advocata_chat.auth import mint_token
from advocata_chat.config import Settings
from tests.openai_stub import OpenAIStub

# Browser tests use Debian's Chromium, never a downloaded browser (`.ci/run` installs it).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        url = db.start_embedded_postgres(tmp_path_factory.mktemp("pg"))
    url = db.async_url(url)
    db.migrate(url)
    return url


@pytest.fixture(scope="session")
def make_database(database_url: str):
    """Create an empty database on the same server; returns its URL."""
    admin = database_url.replace("postgresql+psycopg://", "postgresql://")

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return make_url(database_url).set(database=name).render_as_string(hide_password=False)

    return make


@pytest.fixture(scope="session")
def openai_database_url(make_database) -> str:
    """A database whose chunk index belongs to the OpenAI-protocol embedder (1536 dims)."""
    url = make_database("openai")
    db.migrate(url)
    return url


@pytest.fixture(scope="session")
def make_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("data")

    def make(**overrides) -> Settings:
        values = {
            "database_url": database_url,
            "advocata_data_dir": data_dir,
            "auto_migrate": False,
            "openai_api_key": None,
            "openai_base_url": None,
            "turn_wait_seconds": 10.0,
            # Each app's in-process worker takes only its own app's jobs: tests change
            # limits per app, and a worker of another app would index with its settings.
            "ingest_queue": f"test-{uuid.uuid4().hex[:10]}",
            **overrides,
        }
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def make_client(make_settings):
    @asynccontextmanager
    async def make(
        *, llm: BaseChatModel | None = None, ws: bool = True, **overrides
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(make_settings(**overrides), llm=llm)
        async with app.router.lifespan_context(app):
            # httpx-ws's transport speaks WebSocket as well as HTTP, but its task group must
            # be entered and left in one task, which an async fixture's teardown is not.
            transport = ASGIWebSocketTransport(app=app) if ws else httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                client.app = app  # type: ignore[attr-defined]
                yield client

    return make


@pytest.fixture
async def client(make_client) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(ws=False) as c:
        yield c


@pytest.fixture(scope="session")
def openai_stub() -> OpenAIStub:
    stub = OpenAIStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def stub(openai_stub: OpenAIStub) -> OpenAIStub:
    openai_stub.reset()
    return openai_stub


@pytest.fixture
def stub_client(make_client, openai_database_url, stub):
    """Clients of an app whose model and embeddings are the OpenAI-protocol stub."""

    def make(**overrides):
        values = {
            "database_url": openai_database_url,
            "openai_base_url": stub.base_url,
            "openai_model": "stub-model",
            "openai_max_retries": 0,
            **overrides,
        }
        return make_client(**values)

    return make


@pytest.fixture
def auth(settings: Settings):
    def headers(user_id: uuid.UUID) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(settings, user_id=user_id)}"}

    return headers


@pytest.fixture
def alice() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def bob() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def page(tmp_path):
    """A page in headless Chromium, in a fresh profile."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium; .ci/run does it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        # A fresh profile per test: nothing (a stored token, a cache) leaks between runs.
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()
