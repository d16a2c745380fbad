"""Live prompt reload (development), strict loading (production), the prompts endpoint, and
the side-by-side prompt evaluation. Every test edits its own copy of prompts/."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from typer.testing import CliRunner

from advocata_chat.config import PROJECT_ROOT
from advocata_chat.prompts import PromptError, PromptSet

CHAT = "/api/v1/chat/conversations"
PRODUCTION_SECRET = "k7Qm2vX9pLr4Tw8Zb3Nc6Hy1Jd5Fg0Se"  # production refuses weak ones


class EchoSystemPrompt(BaseChatModel):
    """Answers with the first line of the system prompt it was given, so a test sees which
    prompt version a turn used."""

    @property
    def _llm_type(self) -> str:
        return "echo-system"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kw: Any) -> ChatResult:
        first = messages[0].text.strip().splitlines()[0]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=first))])


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", target)
    return target


def edit(path: Path, text: str) -> None:
    """Write a prompt file and move its mtime on: two writes within one clock tick of the
    file system must still count as two edits here."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def system_text(first_line: str) -> str:
    return f"variables: []\nmessages:\n  - role: system\n    content: |\n      {first_line}\n"


async def ask(client, headers, question: str = "Вопрос") -> str:
    conv = (await client.post(CHAT, json={}, headers=headers)).json()
    r = await client.post(
        f"{CHAT}/{conv['id']}/messages",
        json={"message_content": question, "use_rag": False},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r.json()["messages"][-1]["content"]


async def test_an_edit_takes_effect_on_the_next_message(make_client, auth, prompts):
    headers = auth(uuid.uuid4())
    async with make_client(llm=EchoSystemPrompt(), prompts_dir=prompts, ws=False) as client:
        assert (await ask(client, headers)).startswith("Ты — ИИ-помощник")
        before = (await client.get("/api/v1/prompts", headers=headers)).json()
        edit(prompts / "system.yaml", system_text("Ты — помощник версии два."))
        assert await ask(client, headers) == "Ты — помощник версии два."
        after = (await client.get("/api/v1/prompts", headers=headers)).json()
    assert before["live_reload"] is True
    sha = {p["name"]: p["sha256"] for p in before["prompts"]}
    new = {p["name"]: p["sha256"] for p in after["prompts"]}
    # chat and answer include system, so their versions change with it; condense does not.
    assert {n for n in sha if sha[n] != new[n]} == {"system", "chat", "answer"}
    assert all(p["error"] is None for p in after["prompts"])


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ("messages: [\n", "cannot read prompt"),  # a YAML error
        (  # a typo in a variable: the text and the declaration disagree
            "variables: [history, question]\nmessages:\n  - placeholder: history\n"
            "  - role: human\n    content: '{qustion}'\n",
            "declared variables",
        ),
        (  # consistent, but not what the code fills in
            "variables: [history, instructions, qustion]\nmessages:\n"
            "  - placeholder: instructions\n    optional: true\n  - placeholder: history\n"
            "  - role: human\n    content: '{qustion}'\n",
            "lacks ['question'] and adds ['qustion']",
        ),
    ],
)
async def test_a_broken_edit_keeps_the_last_good_version_and_is_reported(
    make_client, auth, prompts, caplog, broken, reason
):
    headers = auth(uuid.uuid4())
    good = (prompts / "chat.yaml").read_text(encoding="utf-8")
    async with make_client(llm=EchoSystemPrompt(), prompts_dir=prompts, ws=False) as client:
        edit(prompts / "system.yaml", system_text("Хорошая версия."))
        assert await ask(client, headers) == "Хорошая версия."
        kept = client.app.state.runtime.prompts["chat"].sha256

        with caplog.at_level(logging.INFO, logger="advocata_chat.prompts"):
            edit(prompts / "chat.yaml", broken)
            assert await ask(client, headers) == "Хорошая версия."  # still answers
            listed = (await client.get("/api/v1/prompts", headers=headers)).json()["prompts"]
        chat = next(p for p in listed if p["name"] == "chat")
        assert chat["sha256"] == kept and reason in chat["error"]
        assert all(p["error"] is None for p in listed if p["name"] != "chat")
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "prompt chat not reloaded" in record.getMessage()
        assert reason in record.getMessage() and "stays in use" in record.getMessage()

        edit(prompts / "chat.yaml", good)  # fixed: the error goes away
        listed = (await client.get("/api/v1/prompts", headers=headers)).json()["prompts"]
        assert all(p["error"] is None for p in listed)


def test_a_broken_included_file_is_reported_on_every_prompt_that_includes_it(prompts):
    live = PromptSet(prompts, live=True)
    kept = {name: p.sha256 for name, p in live.items()}
    edit(prompts / "system.yaml", "messages: [\n")
    status = {s.name: s for s in live.status()}
    assert {n for n, s in status.items() if s.error} == {"system", "chat", "answer"}
    assert {name: p.sha256 for name, p in live.items()} == kept


def test_a_removed_file_keeps_its_last_version(prompts):
    live = PromptSet(prompts, live=True)
    (prompts / "condense.yaml").unlink()
    assert live["condense"].variables == {"history", "question"}
    assert "removed" in next(s.error for s in live.status() if s.name == "condense")


def test_production_loads_once(prompts):
    fixed = PromptSet(prompts, live=False)
    before = fixed["system"].sha256
    edit(prompts / "system.yaml", "messages: [\n")
    assert fixed["system"].sha256 == before
    assert all(s.error is None for s in fixed.status())


async def test_production_refuses_to_start_with_a_broken_file(make_client, prompts, caplog):
    edit(prompts / "answer.yaml", "messages: [\n")
    with pytest.raises(PromptError, match="answer.yaml: cannot read prompt"):
        async with make_client(
            prompts_dir=prompts, advocata_env="production", jwt_secret=PRODUCTION_SECRET, ws=False
        ):
            pass
    assert "cannot start: the prompts in" in caplog.text and "answer.yaml" in caplog.text


def test_serve_stops_with_a_clear_message_on_a_broken_file(monkeypatch, prompts):
    from advocata_chat.cli import app
    from advocata_chat.config import get_settings

    edit(prompts / "chat.yaml", "variables: []\nmessages:\n  - role: robot\n    content: hi\n")
    monkeypatch.setenv("PROMPTS_DIR", str(prompts))
    monkeypatch.setenv("ADVOCATA_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", PRODUCTION_SECRET)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["serve", "--port", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "do not load" in result.stderr and "chat.yaml" in result.stderr
    assert "needs role" in result.stderr


async def test_the_prompts_endpoint_needs_a_token(client):
    r = await client.get("/api/v1/prompts")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


async def test_the_playground_page_and_its_files_are_served(client):
    page = await client.get("/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name, kind in (("playground.js", "javascript"), ("playground.css", "css")):
        assert f"/playground/{name}" in page.text
        r = await client.get(f"/playground/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert (await client.get("/playground/..%2Fapp.py")).status_code == 404
    # Offline: the page loads nothing from another host.
    assert "http" not in page.text.replace("http-equiv", "")


async def test_eval_compares_two_prompt_folders_on_the_same_chunks(settings, prompts, tmp_path):
    from advocata_chat.evaluation import run, side_by_side, summarize

    eval_set = tmp_path / "set"
    (eval_set / "docs").mkdir(parents=True)
    (eval_set / "docs" / "u1_contract.txt").write_text(
        "Цена работ составляет 164 800 рублей.\nСрок работ — до 1 марта 2026 года.\n",
        encoding="utf-8",
    )
    (eval_set / "questions.jsonl").write_text(
        '{"id": "q1", "user": "u1", "question": "Какова цена работ?", "gold_doc": '
        '"u1_contract", "gold_snippet": "164 800", "answer_keywords": ["164 800"]}\n',
        encoding="utf-8",
    )
    current = PromptSet(settings.prompts_dir)
    edit(prompts / "answer.yaml", (prompts / "answer.yaml").read_text() + "\n# changed\n")
    alternative = PromptSet(prompts, expected={n: p.variables for n, p in current.items()})
    report = await run([eval_set], settings, alternative=alternative, cross_validation=False)
    figures = {label: summarize(results) for label, results in report.results.items()}
    assert set(figures) == {"current", "alternative"}
    assert figures["current"]["snippet_hit@k"] == figures["alternative"]["snippet_hit@k"] == 1.0
    assert report.baselines["bm25"] == {"set:q1": True}  # the naive baseline ran beside it
    table = side_by_side(figures)
    assert table.splitlines()[0].split() == ["metric", "current", "alternative"]
    assert "keyword_recall" in table


def test_an_alternative_folder_must_fill_the_same_variables(prompts):
    current = PromptSet(PROJECT_ROOT / "prompts")
    edit(
        prompts / "chat.yaml",
        "variables: [question]\nmessages:\n  - role: human\n    content: '{question}'\n",
    )
    with pytest.raises(PromptError, match=r"chat.yaml: .* lacks \['history', 'instructions'\]"):
        PromptSet(prompts, expected={n: p.variables for n, p in current.items()})


def test_an_alternative_folder_must_have_every_prompt(prompts):
    current = PromptSet(PROJECT_ROOT / "prompts")
    (prompts / "condense.yaml").unlink()
    with pytest.raises(PromptError, match="has no condense.yaml"):
        PromptSet(prompts, expected={n: p.variables for n, p in current.items()})
