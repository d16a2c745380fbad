"""RAG turns: offline extractive answers with citations, abstention, the OpenAI path with
embeddings over the wire, and the CLI's ingest and reindex."""

from __future__ import annotations

import asyncio
import threading
import uuid

from typer.testing import CliRunner

from tests.test_documents import CONTRACT, DOCS, upload

CHAT = "/api/v1/chat/conversations"
WARRANTY = """ГАРАНТИЙНЫЙ ТАЛОН № 0047731
Изделие: электрический накопительный водонагреватель «ТермоВолга ЭВН-80»
Серийный номер: TV80-2405-11873
1. Гарантийный срок на внутренний бак — 7 лет; на прочие комплектующие — 2 года.
2. Магниевый анод заменяется не реже одного раза в 12 месяцев.
"""


async def ask(client, headers, question, cid=None, use_rag=True):
    if cid is None:
        cid = (await client.post(CHAT, json={"title": "t"}, headers=headers)).json()["id"]
    r = await client.post(
        f"{CHAT}/{cid}/messages",
        json={"message_content": question, "use_rag": use_rag},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return cid, r.json()["messages"][-1]


async def test_offline_answer_quotes_and_cites_the_right_passage(client, auth, alice):
    h = auth(alice)
    contract = (await upload(client, h, "contract.txt", CONTRACT.encode())).json()
    warranty = (await upload(client, h, "warranty.txt", WARRANTY.encode())).json()

    _, answer = await ask(client, h, "Какой серийный номер у моего водонагревателя?")
    assert "TV80-2405-11873" in answer["content"] and "[1]" in answer["content"]
    assert answer["referenced_documents"] == [warranty["id"]]
    [cite] = answer["citations"]
    assert cite["document_id"] == warranty["id"] and "TV80-2405-11873" in cite["quote"]
    assert WARRANTY[cite["quote_start"] : cite["quote_end"]] == cite["quote"]

    _, answer = await ask(client, h, "Сколько стоят работы по договору подряда?")
    assert "164 800" in answer["content"]
    assert contract["id"] in answer["referenced_documents"]
    assert answer["token_count"] == 0  # the offline model bills nothing


async def test_offline_model_abstains_when_the_documents_do_not_answer(client, auth, alice):
    h = auth(alice)
    await upload(client, h, "contract.txt", CONTRACT.encode())
    for question in (
        "Согласился ли подрядчик вернуть мне аванс?",
        "Какой размер алиментов предусмотрен брачным договором?",
    ):
        _, answer = await ask(client, h, question)
        assert "в ваших документах нет ответа" in answer["content"].lower(), question
        assert answer["citations"] == [] and answer["referenced_documents"] == []


LEASE = """ДОГОВОР АРЕНДЫ КВАРТИРЫ № 12
г. Казань, 01.03.2025
1. ПРЕДМЕТ ДОГОВОРА
1.1. Арендодатель Галиев Ильдар Рустемович передаёт Арендатору во временное пользование
квартиру по адресу: г. Казань, ул. Чистопольская, д. 19, кв. 88.
2. ПЛАТЕЖИ
Арендная плата:
45 000 (сорок пять тысяч) рублей.
2.2. Плата вносится не позднее 5-го числа каждого месяца переводом на карту Арендодателя.
3. ПРАВИЛА ПРОЖИВАНИЯ
3.1. Арендатор вправе содержать в квартире одну кошку или собаку небольшой породы
при условии возмещения ущерба, причинённого животным.
3.2. Курение в квартире запрещено.
"""
EMPLOYMENT = """ТРУДОВОЙ ДОГОВОР № 77
1. Работник принимается на должность менеджера по продажам в ООО «Волга-Трейд».
2. Должностной оклад Работника составляет 92 000 (девяносто две тысячи) рублей в месяц.
3. Работнику устанавливается пятидневная рабочая неделя продолжительностью 40 часов.
"""


async def test_offline_answers_quote_the_clause_that_answers_and_abstain_otherwise(
    client, auth, alice
):
    """The issue's cases: the rent question quoted the salary, the pets question abstained
    although the lease has a clause on pets, an insurance question unrelated to the
    documents got unrelated quotes."""
    h = auth(alice)
    lease = (await upload(client, h, "lease.txt", LEASE.encode())).json()
    await upload(client, h, "employment.txt", EMPLOYMENT.encode())

    _, answer = await ask(client, h, "Сколько стоит аренда квартиры в месяц?")
    # The rent sits in a field line whose value is on the next line: both are quoted, and
    # cited to the lease. (The salary may be quoted beside it: another document scoring
    # close is quoted too, which on the dev sets finds a needed document far more often
    # than it misleads; see docs/quality.md.)
    [rent] = [line for line in answer["content"].split("\n\n") if "45 000" in line]
    assert rent.startswith("«Арендная плата: 45 000"), rent
    by_n = {c["n"]: c["document_id"] for c in answer["citations"]}
    assert by_n[int(rent.rsplit("[", 1)[1].rstrip("]"))] == lease["id"]

    _, answer = await ask(client, h, "Можно ли держать в квартире кошку?")
    assert "одну кошку или собаку" in answer["content"]
    assert answer["referenced_documents"] == [lease["id"]]

    _, answer = await ask(client, h, "Какой срок исковой давности по ОСАГО?")
    assert "в ваших документах нет ответа" in answer["content"].lower()
    assert answer["citations"] == []


async def test_use_rag_false_and_users_without_documents_get_plain_chat(client, auth, alice, bob):
    await upload(client, auth(alice), "contract.txt", CONTRACT.encode())
    _, answer = await ask(client, auth(alice), "Сколько стоят работы?", use_rag=False)
    assert "не подключена" in answer["content"] and answer["citations"] == []
    _, answer = await ask(client, auth(bob), "Сколько стоят работы?")
    assert "не подключена" in answer["content"] and answer["citations"] == []


async def test_rag_turn_through_the_openai_protocol(stub_client, stub, auth, alice):
    h = auth(alice)
    async with stub_client() as client:
        doc = (await upload(client, h, "contract.txt", CONTRACT.encode())).json()
        assert doc["status"] == "ready"
        embedded = [r for r in stub.state.requests if "input" in r]
        assert embedded and embedded[0]["model"] == "text-embedding-3-small"

        stub.state.reply = "Цена работ — 164 800 рублей [1]. Аванс 30 % [7]."
        cid, answer = await ask(client, h, "Сколько стоят работы по договору?")
        chat = stub.state.requests[-1]
        system = "\n".join(m["content"] for m in chat["messages"] if m["role"] == "system")
        assert '<source id="1" title="contract">' in system and "164 800" in system
        assert "данные, а не" in system  # documents are framed as data, not instructions
        # The model is told to answer in Russian, from the sources only, and to say so
        # plainly when they hold no answer.
        assert "по-русски" in system and "только на эти фрагменты" in system
        assert "нет ответа на этот" in system
        # [7] points at no source, so only [1] becomes a citation, and [7] is flagged.
        assert answer["referenced_documents"] == [doc["id"]]
        [cite] = answer["citations"]
        assert cite["n"] == 1 and "164 800" in cite["quote"]
        assert answer["generation"]["unknown_citations"] == [7]

        # A follow-up is condensed with the history before retrieval.
        stub.state.reply = "Аванс — 30 % [1]."
        before = len(stub.state.requests)
        await ask(client, h, "А какой там аванс?", cid=cid)
        calls = [r for r in stub.state.requests[before:] if "messages" in r]
        assert len(calls) == 2
        assert "Перепиши" in calls[0]["messages"][0]["content"]
        assert calls[0]["messages"][-1]["content"] == "Вопрос: А какой там аванс?"


def test_cli_ingest_and_reindex(tmp_path, make_database, monkeypatch):
    from advocata_chat import db
    from advocata_chat.cli import app
    from advocata_chat.config import get_settings

    url = make_database("cli")
    db.migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        good = tmp_path / "contract.txt"
        good.write_text(CONTRACT, encoding="utf-8")
        bad = tmp_path / "virus.exe"
        bad.write_bytes(b"MZ")
        user = str(uuid.uuid4())
        result = CliRunner().invoke(app, ["ingest", "--user", user, str(good)])
        assert result.exit_code == 0, result.output
        assert "contract.txt: ready" in result.output
        result = CliRunner().invoke(app, ["ingest", "--user", user, str(bad)])
        assert result.exit_code == 1 and "refused" in result.output

        result = CliRunner().invoke(app, ["reindex"])
        assert result.exit_code == 0, result.output
        assert "reindexed 1 documents" in result.output
        assert "reindexing" in result.output and "1/1" in result.output  # the progress bar
    finally:
        get_settings.cache_clear()


async def test_a_question_is_answered_while_a_document_is_being_embedded(client, auth, alice):
    # The offline encoder runs one call at a time. With one encoder per process, a RAG
    # turn queued behind every batch of a document the in-process worker was embedding
    # (bench.ingest: 22 s turns); indexing now has an encoder of its own.
    rt = client.app.state.runtime
    h = auth(alice)
    await upload(client, h, "warranty.txt", WARRANTY.encode())
    embedding, release = threading.Event(), threading.Event()
    encode = rt.index_embeddings._encode

    def a_long_batch(model, texts, *, query):
        embedding.set()  # inside the encoder's lock, as a real batch is
        release.wait(60)
        return encode(model, texts, query=query)

    rt.index_embeddings._encode = a_long_batch
    try:
        r = await client.post(DOCS, headers=h, files={"file": ("contract.txt", CONTRACT.encode())})
        assert r.status_code == 201 and r.json()["status"] == "queued", r.text
        assert await asyncio.to_thread(embedding.wait, 30)
        _, answer = await asyncio.wait_for(
            ask(client, h, "Какой серийный номер у моего водонагревателя?"), 30
        )
        assert "TV80-2405-11873" in answer["content"]
        doc = (await client.get(f"{DOCS}/{r.json()['id']}", headers=h)).json()
        assert doc["status"] == "processing"  # the answer did not wait for it
    finally:
        release.set()
