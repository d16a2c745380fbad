"""The seed's Python SDK example, run unchanged (but for the token) against a real server."""

from __future__ import annotations

import textwrap
import uuid

import httpx
import pytest

from advocata_chat.auth import mint_token
from tests.server import Server

# Copied from the seed README, section "Python SDK"; only the host/port is substituted.
SEED_EXAMPLE = textwrap.dedent("""
    import asyncio
    import httpx

    async def chat_example():
        async with httpx.AsyncClient() as client:
            # 1. Начать беседу
            response = await client.post(
                "http://localhost:8000/api/v1/chat/conversations",
                json={
                    "initial_message": "Помогите с вопросом по ДТП",
                    "title": "Консультация по ДТП"
                },
                headers={"Authorization": f"Bearer {token}"}
            )
            conversation = response.json()
            conversation_id = conversation["id"]

            # 2. Отправить сообщение
            response = await client.post(
                f"http://localhost:8000/api/v1/chat/conversations/{conversation_id}/messages",
                json={
                    "message_content": "Могу ли я получить компенсацию?",
                    "use_rag": True
                },
                headers={"Authorization": f"Bearer {token}"}
            )
            updated_conversation = response.json()

            # 3. Получить список бесед
            response = await client.get(
                "http://localhost:8000/api/v1/chat/conversations?status=active",
                headers={"Authorization": f"Bearer {token}"}
            )
            conversations = response.json()

    asyncio.run(chat_example())
""")


@pytest.fixture(scope="module")
def server(database_url):
    srv = Server(database_url).wait_ready()
    yield srv
    srv.stop()


def test_seed_python_example_runs_against_the_served_api(server, settings):
    user = uuid.uuid4()
    token = mint_token(settings, user_id=user)
    code = SEED_EXAMPLE.replace("http://localhost:8000", server.url)
    exec(compile(code, "seed_example", "exec"), {"token": token})  # noqa: S102

    headers = {"Authorization": f"Bearer {token}"}
    page = httpx.get(f"{server.url}/api/v1/chat/conversations", headers=headers).json()
    [conv] = page["items"]
    assert conv["title"] == "Консультация по ДТП" and conv["messages_count"] == 3
    full = httpx.get(f"{server.url}/api/v1/chat/conversations/{conv['id']}", headers=headers)
    assert [m["role"] for m in full.json()["messages"]] == ["user", "user", "assistant"]
    # The offline model bills nothing.
    assert conv["total_tokens"] == full.json()["messages"][-1]["token_count"] == 0
