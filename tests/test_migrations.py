"""Alembic round trip on a database of its own."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, make_url

from advocata_chat import db


@pytest.fixture
def scratch_url(database_url):
    name = f"migr_{uuid.uuid4().hex[:8]}"
    admin = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(scratch_url):
    db.migrate(scratch_url)
    assert {"conversations", "messages", "alembic_version"} <= tables(scratch_url)
    engine = create_engine(scratch_url)
    indexes = {i["name"] for i in inspect(engine).get_indexes("messages")}
    indexes |= {i["name"] for i in inspect(engine).get_indexes("conversations")}
    engine.dispose()
    assert {"ix_messages_conversation_seq", "ix_conversations_user_recent"} <= indexes

    db.downgrade(scratch_url, "base")
    assert tables(scratch_url) == {"alembic_version"}

    db.migrate(scratch_url)
    assert {"conversations", "messages"} <= tables(scratch_url)
