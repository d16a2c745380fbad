"""What the app holds while it runs: settings, database, model and prompts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from advocata_chat import db
from advocata_chat.config import Settings
from advocata_chat.llm import build_chat_model
from advocata_chat.prompts import Prompt, load_prompts


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker
    llm: BaseChatModel
    prompts: dict[str, Prompt]

    async def close(self) -> None:
        await self.engine.dispose()


async def start_runtime(settings: Settings, *, llm: BaseChatModel | None = None) -> Runtime:
    # Prompts first: a broken prompt file should stop the start before anything else.
    prompts = load_prompts(settings.prompts_dir)
    url = await asyncio.to_thread(db.resolve_database_url, settings)
    if settings.auto_migrate:
        await asyncio.to_thread(db.migrate, url)
    engine = db.make_engine(url, settings)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=db.make_sessions(engine),
        llm=llm or build_chat_model(settings),
        prompts=prompts,
    )
