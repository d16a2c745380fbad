"""Prompt contract: every file loads, and its variables are the ones its chain supplies."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from advocata_chat.config import PROJECT_ROOT
from advocata_chat.prompts import PromptError, load_prompt, load_prompts

PROMPTS = PROJECT_ROOT / "prompts"

# What each chain passes to its prompt. A new prompt file must be listed here.
CHAIN_INPUTS = {
    "system": set(),
    "chat": {"history", "instructions", "question"},
    "condense": {"history", "question"},
    "answer": {"context", "history", "instructions", "question"},
    "title": {"question", "answer"},
    "instructions": {"instructions"},
}


def test_every_prompt_file_is_known_and_matches_its_chain():
    prompts = load_prompts(PROMPTS)
    assert set(prompts) == set(CHAIN_INPUTS)
    for name, prompt in prompts.items():
        assert prompt.variables == CHAIN_INPUTS[name], name


def test_chat_prompt_renders_system_history_and_question():
    prompt = load_prompts(PROMPTS)["chat"].template
    history = [HumanMessage("раньше"), AIMessage("ответ")]
    messages = prompt.format_messages(history=history, question="Что дальше?")
    assert messages[0].type == "system" and "юрист" in messages[0].text
    assert messages[1:3] == history
    assert messages[-1].text == "Что дальше?"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "variables: [question]\nmessages:\n  - role: human\n    content: '{qustion}'\n",
            "declared variables",
        ),
        ("messages: [\n", "cannot read"),
        ("variables: []\nmessages:\n  - role: robot\n    content: hi\n", "needs role"),
        ("variables: []\nmessages:\n  - include: nowhere\n", "cannot read"),
    ],
)
def test_broken_prompt_files_fail_with_a_clear_message(tmp_path: Path, text, error):
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromptError, match=error):
        load_prompt(path)


def test_prompt_hash_changes_with_an_included_file(tmp_path: Path):
    (tmp_path / "system.yaml").write_text(
        "variables: []\nmessages:\n  - role: system\n    content: one\n", encoding="utf-8"
    )
    (tmp_path / "chat.yaml").write_text(
        "variables: []\nmessages:\n  - include: system\n", encoding="utf-8"
    )
    before = load_prompt(tmp_path / "chat.yaml").sha256
    (tmp_path / "system.yaml").write_text(
        "variables: []\nmessages:\n  - role: system\n    content: two\n", encoding="utf-8"
    )
    assert load_prompt(tmp_path / "chat.yaml").sha256 != before


async def test_the_chains_fill_every_variable_of_their_prompts():
    from langchain_core.documents import Document
    from langchain_core.language_models import FakeListChatModel
    from langchain_core.runnables import RunnableLambda

    from chains.chat import build_chat_chain
    from chains.condense import build_condense_chain
    from chains.rag import build_rag_chain
    from chains.title import build_title_chain

    prompts = load_prompts(PROMPTS)
    llm = FakeListChatModel(responses=["переписанный вопрос", "ответ [1]", "ответ"])
    doc = Document(page_content="Цена работ 164 800 рублей.", metadata={"title": "Договор"})
    chain = build_rag_chain(
        llm=llm,
        condense=build_condense_chain(llm=llm, prompt=prompts["condense"].template),
        retriever=RunnableLambda(lambda q: [doc]),
        prompt=prompts["answer"].template,
        max_context_tokens=500,
    )
    history = [HumanMessage("раньше"), AIMessage("ответ")]
    out = await chain.ainvoke({"history": history, "question": "Сколько стоит?"})
    assert out["standalone"] == "переписанный вопрос"
    assert out["answer"].text == "ответ [1]"
    assert '<source id="1" title="Договор">' in out["packed"]["context"]
    chat = build_chat_chain(llm=llm, prompt=prompts["chat"].template)
    extra = prompts["instructions"].template.format_messages(instructions="Пиши кратко.")
    assert (await chat.ainvoke({"history": [], "question": "Привет", "instructions": extra})).text
    title = build_title_chain(
        llm=FakeListChatModel(responses=["ДТП без ОСАГО"]), prompt=prompts["title"].template
    )
    assert await title.ainvoke({"question": "вопрос", "answer": "ответ"}) == "ДТП без ОСАГО"
