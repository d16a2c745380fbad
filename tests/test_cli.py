"""The command line: `token` prints only a token that the API accepts; `serve` says what it
runs on; a mistake a user can fix ends with one line and a non-zero exit, not a traceback;
`ingest --title`, `--data-dir` and the `reindex` progress bar."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import httpx
import jwt
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from sqlalchemy import make_url
from typer.testing import CliRunner

from advocata_chat import db, store
from advocata_chat.auth import mint_token
from advocata_chat.cli import app
from advocata_chat.config import PROJECT_ROOT, Settings, get_settings
from advocata_chat.llm import build_embeddings
from tests.server import Server, free_port
from tests.test_documents import CONTRACT

# Every setting comes from the test (or the .env it writes), none from the developer's shell.
OWN = {name.upper() for name in Settings.model_fields}


def cli(*args: str, cwd, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run `advocata-chat` as a user does: its own process, its own folder (and .env)."""
    environment = {k: v for k, v in os.environ.items() if k.upper() not in OWN} | env
    return subprocess.run(
        [sys.executable, "-m", "advocata_chat.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def startup_lines(server: Server) -> list[str]:
    """The messages of the JSON log lines `serve` wrote before it was ready."""
    lines = []
    for line in server.logs().splitlines():
        with_json = line.startswith("{")
        lines.append(json.loads(line)["msg"] if with_json else line)
    return lines


def offline_embedder() -> tuple[str, int]:
    _, name, dims = build_embeddings(
        Settings(_env_file=None, openai_api_key=None, openai_base_url=None)
    )
    return name, dims


# -- token ---------------------------------------------------------------------------


def test_token_prints_only_a_valid_token(monkeypatch, settings, make_client):
    user = uuid.uuid4()
    monkeypatch.setenv("JWT_SECRET", settings.jwt_secret.get_secret_value())
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["token", "--user", str(user)])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token
    claims = jwt.decode(token, settings.jwt_secret.get_secret_value(), algorithms=["HS256"])
    assert claims["sub"] == str(user) and claims["exp"] > claims["iat"]


def test_token_refuses_a_bad_user_id():
    result = CliRunner().invoke(app, ["token", "--user", "alice"])
    assert result.exit_code != 0


# -- settings that do not load -------------------------------------------------------


@pytest.mark.parametrize(
    ("dotenv", "expected"),
    [
        ("OPENAI_TEMPERATURE=warm\n", "OPENAI_TEMPERATURE='warm' in {env} is invalid"),
        ("OPENAI_MAX_TOKENS=\n", "OPENAI_MAX_TOKENS='' in {env} is invalid"),
        ("EXPORT_TIMEZONE=Europe/Atlantis\n", "unknown time zone 'Europe/Atlantis'"),
    ],
)
def test_a_broken_env_file_is_one_line_naming_the_setting(tmp_path, dotenv, expected):
    (tmp_path / ".env").write_text(dotenv, encoding="utf-8")
    run = cli("serve", cwd=tmp_path, timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stdout == "" and "Traceback" not in run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("error: ")
    assert expected.format(env=tmp_path / ".env") in line


def test_production_without_a_secret_says_how_to_make_one(tmp_path):
    (tmp_path / ".env").write_text("ADVOCATA_ENV=production\n", encoding="utf-8")
    run = cli("token", "--user", str(uuid.uuid4()), cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("error: JWT_SECRET must be set to a real secret")
    command = line.split("make one with: ")[1].split(" (set in")[0]
    assert command.startswith("python -c ")
    secret = subprocess.run(
        [sys.executable, "-c", command.removeprefix("python -c ").strip("'")],
        capture_output=True,
        text=True,
    ).stdout.strip()
    (tmp_path / ".env").write_text(f"ADVOCATA_ENV=production\nJWT_SECRET={secret}\n")
    run = cli("token", "--user", str(uuid.uuid4()), cwd=tmp_path)
    assert run.returncode == 0 and jwt.decode(run.stdout.strip(), secret, algorithms=["HS256"])


# -- an index built by another embedder ----------------------------------------------


@pytest.fixture
def foreign_index(make_database, settings) -> str:
    """A database whose chunk index was built by another embedder (8 dimensions)."""
    url = make_database("foreign")
    db.migrate(url)

    async def build() -> None:
        engine = db.make_engine(url, settings)
        fake = DeterministicFakeEmbedding(size=8)
        await store.open_store(engine, fake, model="fake-8", dims=8)
        await engine.dispose()

    asyncio.run(build())
    return url


def test_serve_with_a_mismatched_embedder_says_to_reindex(foreign_index, tmp_path):
    name, dims = offline_embedder()
    # Were the index check left to the app's start-up, this would serve until the timeout.
    port = str(free_port())
    run = cli("serve", "--port", port, cwd=tmp_path, DATABASE_URL=foreign_index)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    [line] = [x for x in run.stderr.splitlines() if x.startswith("error:")]
    assert "built with 'fake-8' (8 dimensions)" in line
    assert f"configured embedder is '{name}' ({dims} dimensions)" in line
    assert "advocata-chat reindex" in line


def test_ingest_with_a_mismatched_embedder_says_to_reindex(foreign_index, tmp_path):
    (tmp_path / "contract.txt").write_text(CONTRACT, encoding="utf-8")
    run = cli(
        "ingest",
        "--user",
        str(uuid.uuid4()),
        "contract.txt",
        cwd=tmp_path,
        DATABASE_URL=foreign_index,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "error: The document index was built with 'fake-8'" in run.stderr
    assert "advocata-chat reindex" in run.stderr


def test_an_unreachable_database_is_one_line(tmp_path):
    url = "postgresql://advocata:s3cret@127.0.0.1:1/advocata"
    run = cli("migrate", cwd=tmp_path, DATABASE_URL=url)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("error: cannot reach the database postgresql://advocata@127.0.0.1:1/")
    assert "DATABASE_URL" in line and "s3cret" not in line


# -- serve says what it runs on ------------------------------------------------------


def test_serve_names_its_database_model_embedder_prompts_and_urls(openai_database_url, stub):
    # The same database, reached with a password the log must not show.
    url = make_url(openai_database_url).set(password="s3cret-pass")
    assert url.password == "s3cret-pass"
    srv = Server(
        url.render_as_string(hide_password=False),
        OPENAI_BASE_URL=stub.base_url,
        OPENAI_MODEL="stub-model",
    ).wait_ready()
    try:
        lines, log = startup_lines(srv), srv.logs()
        for path in ("/docs", "/playground"):
            assert httpx.get(srv.url + path).status_code == 200
    finally:
        srv.stop()
    stub_host = stub.base_url.split("//")[1].split("/")[0]
    for expected in (
        f"chat model: stub-model at {stub_host}",
        "embedder: text-embedding-3-small, 1536 dimensions",
        f"prompts: {PROJECT_ROOT / 'prompts'}",
        f"docs: {srv.url}/docs",
        f"playground: {srv.url}/playground",
    ):
        assert expected in lines
    [database] = [x for x in lines if x.startswith("database: ")]
    assert database.startswith(f"database: {url.drivername}://{url.username}@")
    assert f"/{url.database}" in database and "s3cret-pass" not in log


@pytest.fixture(scope="module")
def data_dir_server(tmp_path_factory):
    """`ingest --title --data-dir D`, then `serve --data-dir D` on the embedded database."""
    work = tmp_path_factory.mktemp("cli")
    data = work / "state"
    (work / "contract.txt").write_text(CONTRACT, encoding="utf-8")
    user = uuid.uuid4()
    title = "Договор подряда № 41/Р (ремонт)"
    args = ("ingest", "--user", str(user), "--title", title, "--data-dir", str(data))
    ingested = cli(*args, "contract.txt", cwd=work, timeout=300)
    assert ingested.returncode == 0, ingested.stderr
    srv = Server(None, "--data-dir", str(data)).wait_ready(timeout=120)
    yield srv, data, user, title, ingested.stdout
    srv.stop()


def test_serve_on_the_embedded_database_names_its_folder_and_the_offline_model(data_dir_server):
    srv, data, *_ = data_dir_server
    lines = startup_lines(srv)
    name, dims = offline_embedder()
    assert f"database: embedded PostgreSQL in {data.resolve() / 'pgdata'}" in lines
    assert any(x.startswith("chat model: offline (") and "bills 0 tokens" in x for x in lines)
    assert f"embedder: {name}, {dims} dimensions" in lines
    assert f"docs: {srv.url}/docs" in lines


def test_ingest_title_and_data_dir_reach_the_served_documents(data_dir_server, settings):
    srv, data, user, title, output = data_dir_server
    assert "contract.txt: ready" in output and title in " ".join(output.split())
    assert (data / "pgdata" / "PG_VERSION").exists()
    token = mint_token(settings, user_id=user)
    page = httpx.get(f"{srv.url}/api/v1/documents", headers={"Authorization": f"Bearer {token}"})
    [doc] = page.json()["items"]
    assert doc["title"] == title and doc["filename"] == "contract.txt" and doc["status"] == "ready"


def test_stopping_serve_stops_its_embedded_database(data_dir_server):
    # Runs after the other tests of this server: it stops it (stop() is idempotent).
    srv, data, *_ = data_dir_server
    pidfile = data / "pgdata" / "postmaster.pid"
    assert pidfile.exists()
    srv.proc.terminate()  # SIGTERM, as a service manager stops it
    assert srv.proc.wait(timeout=30) == 0
    assert not pidfile.exists(), "the embedded PostgreSQL outlived `serve`"


def test_ingest_refuses_one_title_for_several_files(tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("текст", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["ingest", "--user", str(uuid.uuid4()), "--title", "T"]
        + [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")],
    )
    assert result.exit_code == 2 and "exactly one file" in result.output


# -- eval ------------------------------------------------------------------------------


def test_eval_refuses_a_folder_that_is_not_a_set_in_one_line(tmp_path):
    (tmp_path / "docs").mkdir()  # but no questions.jsonl
    run = cli("eval", "--set", str(tmp_path), cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("error: ") and str(tmp_path) in line and "questions.jsonl" in line


def test_eval_with_a_broken_env_value_is_one_line(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "questions.jsonl").write_text("", encoding="utf-8")
    (tmp_path / ".env").write_text("RAG_TOP_K=many\n", encoding="utf-8")
    run = cli("eval", "--set", str(tmp_path), cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("error: RAG_TOP_K")
