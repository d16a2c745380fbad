"""Run a benchmark server: `python -m bench.serve app|floor --port P [--tokens N] [--stamp 1]`.

`app` is the real application with the zero-latency chat model injected. `floor` is a bare
FastAPI app on the same database doing only a turn's essential work: insert the user
message, one indexed vector query under the user filter, insert the answer, update the
conversation (REST), plus the same number of token frames (WebSocket).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import uuid

import numpy as np
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from psycopg_pool import AsyncConnectionPool

from advocata_chat import db
from advocata_chat.app import create_app
from advocata_chat.config import Settings
from bench.common import DIMS, NO_LIMITS, WORDS, FastChatModel, unit

FLOOR_WRITES = (
    "INSERT INTO messages (id, conversation_id, role, content, status, created_at,"
    " referenced_documents, citations) VALUES (%s, %s, 'user', %s, 'complete', now(), '[]', '[]')",
    "SELECT id, content FROM chunks WHERE user_id = %s ORDER BY embedding <=> %s::vector LIMIT 5",
    "INSERT INTO messages (id, conversation_id, role, content, status, token_count, created_at,"
    " referenced_documents, citations) VALUES (%s, %s, 'assistant', %s, 'complete', %s, now(),"
    " '[]', '[]')",
    "UPDATE conversations SET messages_count = messages_count + 2, total_tokens = total_tokens"
    " + %s, last_message_at = now(), updated_at = now() WHERE id = %s"
    " RETURNING total_tokens, messages_count",
)


def floor_app(url: str, tokens: int, pool_size: int) -> FastAPI:
    pool = AsyncConnectionPool(
        db.psycopg_conninfo(url),
        min_size=2,
        max_size=pool_size,
        open=False,
        kwargs={"autocommit": False},
    )
    query = str(unit(np.random.default_rng(0).standard_normal(DIMS)).tolist())
    answer = "".join(WORDS[i % len(WORDS)] + " " for i in range(tokens))

    async def turn(cid: uuid.UUID, user: uuid.UUID, content: str) -> dict:
        async with pool.connection() as conn:
            await conn.execute("SET hnsw.iterative_scan = relaxed_order")
            ins_user, search, ins_answer, bump = FLOOR_WRITES
            await conn.execute(ins_user, (uuid.uuid4(), cid, content))
            rows = await (await conn.execute(search, (user, query))).fetchall()
            await conn.execute(ins_answer, (uuid.uuid4(), cid, answer, 120))
            total, count = await (await conn.execute(bump, (120, cid))).fetchone()
        return {"id": str(cid), "sources": len(rows), "total_tokens": total, "messages": count}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await pool.open()
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/floor/{cid}/{user}")
    async def rest(cid: uuid.UUID, user: uuid.UUID, body: dict) -> dict:
        return await turn(cid, user, body["message_content"])

    @app.websocket("/floor/ws/{cid}/{user}")
    async def socket(ws: WebSocket, cid: uuid.UUID, user: uuid.UUID) -> None:
        await ws.accept()
        try:
            while True:
                frame = json.loads(await ws.receive_text())
                await ws.send_text(json.dumps({"type": "message_received"}))
                result = await turn(cid, user, frame["content"])
                for i in range(tokens):
                    delta = WORDS[i % len(WORDS)] + " "
                    await ws.send_text(json.dumps({"type": "token", "delta": delta}))
                await ws.send_text(json.dumps({"type": "message", "message": result}))
        except WebSocketDisconnect:
            pass

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["app", "floor"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--stamp", type=int, default=0)
    parser.add_argument("--pool", type=int, default=30)
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    if args.kind == "floor":
        app = floor_app(url, args.tokens, args.pool)
    else:
        settings = Settings(
            database_url=url, auto_migrate=False, **NO_LIMITS, turn_wait_seconds=600
        )
        app = create_app(settings, llm=FastChatModel(tokens=args.tokens, stamp=bool(args.stamp)))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        ws_max_queue=1024,
        backlog=4096,
        # Longer than any phase of a run, so the client never reuses a closed connection.
        timeout_keep_alive=300,
    )


if __name__ == "__main__":
    main()
