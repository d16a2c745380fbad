"""Alembic round trip on a database of its own."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from advocata_chat import db


@pytest.fixture
def scratch_url(make_database):
    return make_database("migr")


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
