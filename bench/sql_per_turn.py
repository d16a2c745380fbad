"""SQL statements and transactions per plain (no RAG) chat turn, REST and WebSocket.

    python -m bench.sql_per_turn [--turns 10]

The app runs in this process (httpx-ws's ASGI transport) with the zero-latency chat model, so
a SQLAlchemy `before_cursor_execute` listener on the app's engine sees every statement of a
turn, and a `begin` listener counts its transactions. The hub's own psycopg connection
(LISTEN/NOTIFY, the cross-process bridge) is not the engine's and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections import Counter

import httpx
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from sqlalchemy import event

from advocata_chat.app import create_app
from advocata_chat.auth import mint_token
from advocata_chat.config import Settings
from bench.common import NO_LIMITS, FastChatModel, fresh_database, run, table

TOKENS = 20


class Counts:
    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0
        self.kinds: Counter[str] = Counter()
        self.log: list[str] | None = None

    def attach(self, engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _statement(conn, cursor, statement, *a) -> None:
            self.statements += 1
            self.kinds[statement.split(None, 1)[0].upper()] += 1
            if self.log is not None:
                self.log.append(" ".join(statement.split())[:150])

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            self.transactions += 1
            if self.log is not None:
                self.log.append("BEGIN")

    def reset(self) -> None:
        self.statements = self.transactions = 0
        self.kinds.clear()


async def main(url: str, turns: int, show: bool = False) -> list[str]:
    url = fresh_database(url, "sql")
    settings = Settings(_env_file=None, database_url=url, auto_migrate=False, **NO_LIMITS)
    app = create_app(settings, llm=FastChatModel(tokens=TOKENS))
    counts = Counts()
    rows = []
    async with app.router.lifespan_context(app):
        counts.attach(app.state.runtime.engine.sync_engine)
        transport = ASGIWebSocketTransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            user = uuid.uuid4()
            headers = {"Authorization": f"Bearer {mint_token(settings, user_id=user)}"}

            async def conversation() -> str:
                r = await client.post("/api/v1/chat/conversations", json={}, headers=headers)
                return r.json()["id"]

            # REST: a conversation is given its title after the first answer; count turns 2+.
            cid = await conversation()
            path = f"/api/v1/chat/conversations/{cid}/messages"
            body = {"message_content": "Вопрос о договоре", "use_rag": False}
            await client.post(path, json=body, headers=headers)
            await asyncio.sleep(0.2)
            counts.reset()
            for _ in range(turns):
                r = await client.post(path, json=body, headers=headers)
                assert r.status_code == 200, r.text
            await asyncio.sleep(0.2)
            rows.append(["REST", counts.statements / turns, counts.transactions / turns])
            rest_kinds = dict(counts.kinds)
            if show:
                counts.log = []
                await client.post(path, json=body, headers=headers)
                await asyncio.sleep(0.2)
                print("one REST turn:", *counts.log, sep="\n  ", flush=True)
                counts.log = None

            cid = await conversation()
            token = mint_token(settings, user_id=user)
            async with aconnect_ws(f"/ws/chat/{cid}?token={token}", client) as ws:
                await ws.receive_text()  # connected

                async def turn() -> None:
                    await ws.send_text(
                        json.dumps({"type": "message", "content": "Вопрос", "use_rag": False})
                    )
                    while True:
                        frame = json.loads(await ws.receive_text())
                        if frame["type"] in ("message", "error"):
                            assert frame["type"] == "message", frame
                            break
                    await asyncio.sleep(0.05)  # the title follows the first answer

                await turn()
                await asyncio.sleep(0.2)
                counts.reset()
                for _ in range(turns):
                    await turn()
                await asyncio.sleep(0.2)
                rows.append(["WS", counts.statements / turns, counts.transactions / turns])
                ws_kinds = dict(counts.kinds)
                if show:
                    counts.log = []
                    await turn()
                    await asyncio.sleep(0.2)
                    print("one WS turn:", *counts.log, sep="\n  ", flush=True)
    print("REST statements by kind, all turns:", rest_kinds, flush=True)
    print("WS statements by kind, all turns:", ws_kinds, flush=True)
    return [
        table(
            "SQL per plain turn (no RAG; the title's turn excluded)",
            ["API", "statements / turn", "transactions / turn"],
            rows,
        )
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--show", action="store_true", help="print one turn's statements")
    args = parser.parse_args()
    run(lambda url: main(url, args.turns, args.show))
