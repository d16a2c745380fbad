"""The offline model and the Postgres-backed LangChain history."""

from __future__ import annotations

import uuid

from langchain_core.messages import AIMessage, HumanMessage

from advocata_chat import db
from advocata_chat.history import PostgresChatHistory
from advocata_chat.models import Conversation
from advocata_chat.offline import OfflineChatModel


async def test_offline_model_streams_an_honest_notice():
    model = OfflineChatModel()
    chunks = [c async for c in model.astream([HumanMessage("Нужен ли юрист?")])]
    text = "".join(c.text for c in chunks)
    assert len([c for c in chunks if c.text]) > 10
    assert "не подключена" in text and "Нужен ли юрист?" in text
    whole = await model.ainvoke([HumanMessage("Нужен ли юрист?")])
    assert whole.text == text and whole.usage_metadata["total_tokens"] == 0  # no provider billed


async def test_history_round_trip_and_window(settings, database_url):
    engine = db.make_engine(database_url, settings)
    sessions = db.make_sessions(engine)
    cid = uuid.uuid4()
    async with sessions.begin() as s:
        s.add(Conversation(id=cid, user_id=uuid.uuid4()))
    history = PostgresChatHistory(sessions, cid, max_messages=10, max_tokens=10_000)
    await history.aadd_messages([HumanMessage("вопрос"), AIMessage("ответ")])
    await history.aadd_messages([HumanMessage("ещё вопрос")])
    assert [(m.type, m.text) for m in await history.aget_messages()] == [
        ("human", "вопрос"),
        ("ai", "ответ"),
        ("human", "ещё вопрос"),
    ]
    # The window drops the oldest messages first, by count and by tokens.
    small = PostgresChatHistory(sessions, cid, max_messages=2, max_tokens=10_000)
    assert [m.text for m in await small.aget_messages()] == ["ответ", "ещё вопрос"]
    tiny = PostgresChatHistory(sessions, cid, max_messages=10, max_tokens=8)
    assert [m.text for m in await tiny.aget_messages()] == ["ещё вопрос"]
    async with sessions() as s:
        assert (await s.get(Conversation, cid)).messages_count == 3
    async with sessions.begin() as s:
        (await s.get(Conversation, cid)).total_tokens = 500  # spent on answers
    await history.aclear()
    assert await history.aget_messages() == []
    async with sessions() as s:
        conv = await s.get(Conversation, cid)
        # Cleared messages leave the chat; the tokens they cost stay spent.
        assert (conv.messages_count, conv.total_tokens) == (0, 500)
    await engine.dispose()
