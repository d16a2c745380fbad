"""The seed's roadmap: templates, instructions, feedback, export, sharing, titles,
regenerate and edit."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest
from httpx_ws import aconnect_ws

from advocata_chat.auth import mint_token
from advocata_chat.config import PROJECT_ROOT
from advocata_chat.prompts import PromptError
from advocata_chat.templates import load_template, load_templates
from tests.test_documents import CONTRACT, upload

CHAT = "/api/v1/chat"
CONV = f"{CHAT}/conversations"


async def send(client, h, cid, text, **extra):
    r = await client.post(
        f"{CONV}/{cid}/messages", json={"message_content": text, **extra}, headers=h
    )
    assert r.status_code == 200, r.text
    return r.json()


# -- templates -----------------------------------------------------------------------


def test_every_template_file_is_valid():
    templates = load_templates(PROJECT_ROOT / "prompts" / "templates")
    assert set(templates) == {
        "dtp_osago",
        "insurance_refusal",
        "consumer_rights",
        "labor_dismissal",
        "rental_housing",
        "debt_receipt",
    }
    for t in templates.values():
        assert t.title and t.system_addition and len(t.suggested_questions) >= 2
        assert len(t.facts_to_collect) >= 3


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "title: x\ndescription: y\nsuggested_questions: [a]\nfacts_to_collect: [b]\n",
            "system_addition",
        ),
        (
            "title: x\ndescription: y\nsystem_addition: z\nsuggested_questions: []\n"
            "facts_to_collect: [b]\n",
            "suggested_questions",
        ),
        (
            "title: x\ndescription: y\nsystem_addition: z\nsuggested_questions: [a]\n"
            "facts_to_collect: [b]\nsurprise: 1\n",
            "unknown fields",
        ),
        ("title: [\n", "cannot read"),
    ],
)
def test_broken_template_files_are_refused(tmp_path: Path, text, error):
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromptError, match=error):
        load_template(path)


async def test_templates_are_listed_and_applied(stub_client, stub, auth, alice):
    h = auth(alice)
    async with stub_client(ws=False) as client:
        listed = (await client.get(f"{CHAT}/templates", headers=h)).json()
        dtp = next(t for t in listed if t["id"] == "dtp_osago")
        assert dtp["title"] == "ДТП и ОСАГО" and dtp["suggested_questions"]
        assert dtp["facts_to_collect"]

        r = await client.post(
            CONV, json={"template_id": "dtp_osago", "instructions": "Отвечай коротко."}, headers=h
        )
        assert r.status_code == 201
        conv = r.json()
        assert conv["title"] == "ДТП и ОСАГО" and conv["template_id"] == "dtp_osago"
        body = await send(client, h, conv["id"], "Что делать после ДТП?")
        system = [
            m["content"] for m in stub.state.requests[-1]["messages"] if m["role"] == "system"
        ]
        # The base legal prompt comes first; the template and the instruction after it.
        assert "Advocata" in system[0]
        assert "европротокол" in system[1] and "Отвечай коротко." in system[1]
        assert "не отменяют" in system[1]
        generation = body["messages"][-1]["generation"]
        assert generation["template_id"] == "dtp_osago" and generation["custom_instructions"]
        assert set(generation["prompts"]) == {"system", "chat", "instructions"}

        r = await client.post(CONV, json={"template_id": "no_such"}, headers=h)
        assert r.status_code == 422 and "template_id" in r.json()["error"]
        r = await client.post(CONV, json={"instructions": "я" * 2001}, headers=h)
        assert r.status_code == 422
        r = await client.patch(f"{CONV}/{conv['id']}", json={"instructions": ""}, headers=h)
        assert r.status_code == 200 and r.json()["instructions"] is None


# -- titles --------------------------------------------------------------------------


async def test_untitled_conversations_are_named_after_the_first_exchange(client, auth, alice):
    h = auth(alice)
    cid = (await client.post(CONV, json={}, headers=h)).json()["id"]
    body = await send(
        client, h, cid, "Здравствуйте! Страховая отказала в выплате по КАСКО, что делать дальше?"
    )
    assert body["title"] == "Страховая отказала в выплате по КАСКО, что делать…"
    await send(client, h, cid, "А если они не ответят?")
    assert (await client.get(f"{CONV}/{cid}", headers=h)).json()["title"] == body["title"]

    named = (await client.post(CONV, json={"title": "Моё название"}, headers=h)).json()["id"]
    assert (await send(client, h, named, "Вопрос про аренду"))["title"] == "Моё название"


# -- regenerate and edit -------------------------------------------------------------


async def test_regenerate_keeps_the_old_answer_and_the_token_totals(client, auth, alice):
    h = auth(alice)
    cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
    first = await send(client, h, cid, "Можно ли вернуть товар?")
    old = first["messages"][-1]
    r = await client.post(f"{CONV}/{cid}/regenerate", headers=h)
    assert r.status_code == 200
    body = r.json()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert body["messages"][-1]["id"] != old["id"] and body["messages_count"] == 2
    everything = (
        await client.get(f"{CONV}/{cid}", params={"include_superseded": True}, headers=h)
    ).json()["messages"]
    assert [m["id"] for m in everything][:2] == [first["messages"][0]["id"], old["id"]]
    assert everything[1]["superseded_at"] is not None
    assert body["total_tokens"] == sum(m["token_count"] or 0 for m in everything)
    stats = (await client.get(f"{CHAT}/stats/tokens", headers=h)).json()
    assert stats["total_tokens"] == body["total_tokens"]

    empty = (await client.post(CONV, json={}, headers=h)).json()["id"]
    r = await client.post(f"{CONV}/{empty}/regenerate", headers=h)
    assert r.status_code == 409 and r.json()["code"] == "nothing_to_answer"


async def test_edit_the_last_question_and_answer_again(client, auth, alice):
    h = auth(alice)
    cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
    await send(client, h, cid, "первый вопрос")
    body = await send(client, h, cid, "второй вопрос с опечаткой")
    first_q, _, last_q, last_a = body["messages"]
    r = await client.patch(
        f"{CONV}/{cid}/messages/{last_q['id']}", json={"content": "второй вопрос"}, headers=h
    )
    assert r.status_code == 200, r.text
    messages = r.json()["messages"]
    assert [m["content"] for m in messages][::2] == ["первый вопрос", "второй вопрос"]
    assert messages[2]["replaces_id"] == last_q["id"] and r.json()["messages_count"] == 4
    assert "второй вопрос»" in messages[3]["content"]
    old = (
        await client.get(f"{CONV}/{cid}", params={"include_superseded": True}, headers=h)
    ).json()["messages"]
    assert {m["id"] for m in old if m["superseded_at"]} == {last_q["id"], last_a["id"]}

    for target, status in (
        (first_q["id"], 409),
        (messages[3]["id"], 409),
        (str(uuid.uuid4()), 404),
        (last_q["id"], 404),
    ):
        r = await client.patch(f"{CONV}/{cid}/messages/{target}", json={"content": "x"}, headers=h)
        assert r.status_code == status, (target, r.text)


async def test_regenerate_over_the_websocket(make_client, auth, settings, alice):
    h = auth(alice)
    async with make_client() as client:
        cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
        await send(client, h, cid, "вопрос")
        token = mint_token(settings, user_id=alice)
        async with aconnect_ws(f"http://test/ws/chat/{cid}?token={token}", client) as ws:
            await ws.receive_text()
            await ws.send_text(json.dumps({"type": "regenerate"}))
            while (frame := json.loads(await ws.receive_text()))["type"] != "message":
                pass
        conv = (await client.get(f"{CONV}/{cid}", headers=h)).json()
        assert conv["messages"][-1]["id"] == frame["message"]["id"]
        assert conv["messages_count"] == 2


# -- feedback ------------------------------------------------------------------------


async def test_feedback_on_answers_and_its_summary(client, auth, alice, bob):
    h = auth(alice)
    cid = (await client.post(CONV, json={"title": "t"}, headers=h)).json()["id"]
    user_msg, answer = (await send(client, h, cid, "вопрос"))["messages"]
    url = f"{CONV}/{cid}/messages/{answer['id']}/feedback"
    r = await client.put(url, json={"rating": "up"}, headers=h)
    assert r.status_code == 200 and r.json()["rating"] == "up"
    r = await client.put(url, json={"rating": "down", "comment": "не помогло"}, headers=h)
    assert r.json()["rating"] == "down" and r.json()["comment"] == "не помогло"
    assert (await client.get(url, headers=h)).json()["rating"] == "down"

    summary = (await client.get(f"{CHAT}/feedback/summary", headers=h)).json()
    assert (summary["scope"], summary["up"], summary["down"]) == ("mine", 0, 1)
    [group] = summary["by_prompt_version"]
    assert group["answer_prompt"] == answer["generation"]["prompts"]["chat"]

    bad = f"{CONV}/{cid}/messages/{user_msg['id']}/feedback"
    assert (await client.put(bad, json={"rating": "up"}, headers=h)).status_code == 422
    assert (await client.put(url, json={"rating": "meh"}, headers=h)).status_code == 422
    assert (await client.put(url, json={"rating": "up"}, headers=auth(bob))).status_code == 404
    assert (await client.get(url, headers=auth(bob))).status_code == 404
    assert (await client.delete(url, headers=auth(bob))).status_code == 404
    assert (await client.delete(url, headers=h)).status_code == 204
    assert (await client.get(url, headers=h)).status_code == 404


# -- export --------------------------------------------------------------------------


async def test_export_in_every_format_with_cyrillic_and_sources(client, auth, alice):
    from docx import Document
    from pypdf import PdfReader

    h = auth(alice)
    await upload(client, h, "contract.txt", CONTRACT.encode())
    cid = (await client.post(CONV, json={"title": "Ремонт санузла"}, headers=h)).json()["id"]
    await send(client, h, cid, "Сколько стоят работы по договору?")

    def check(text: str) -> None:
        flat = " ".join(text.split())
        for expected in (
            "Ремонт санузла",
            "Сколько стоят работы по договору?",
            "164 800",
            "Источники",
            "не юридическое заключение",
            "Ассистент Advocata",
        ):
            assert expected in flat, expected

    r = await client.get(f"{CONV}/{cid}/export", params={"format": "md"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert "attachment" in r.headers["content-disposition"]
    check(r.text)
    r = await client.get(f"{CONV}/{cid}/export", params={"format": "docx"}, headers=h)
    check("\n".join(p.text for p in Document(io.BytesIO(r.content)).paragraphs))
    r = await client.get(f"{CONV}/{cid}/export", params={"format": "pdf"}, headers=h)
    assert r.headers["content-type"] == "application/pdf"
    check("\n".join(p.extract_text() for p in PdfReader(io.BytesIO(r.content)).pages))
    r = await client.get(f"{CONV}/{cid}/export", params={"format": "odt"}, headers=h)
    assert r.status_code == 422


async def test_export_of_messages_with_control_characters(client, auth, alice):
    # lxml refuses control characters in DOCX (a 500 before); fonts have no glyph for them.
    from docx import Document
    from pypdf import PdfReader

    h = auth(alice)
    cid = (await client.post(CONV, json={"title": "Тема\x01"}, headers=h)).json()["id"]
    await send(client, h, cid, "Строка\x01 с\x0bуправляющими\x1b[31m символами\x7f")
    r = await client.get(f"{CONV}/{cid}/export", params={"format": "docx"}, headers=h)
    assert r.status_code == 200, r.text
    paragraphs = [p.text for p in Document(io.BytesIO(r.content)).paragraphs]
    assert "Тема" in paragraphs and "Строка с" in paragraphs
    assert "управляющими[31m символами" in paragraphs
    r = await client.get(f"{CONV}/{cid}/export", params={"format": "pdf"}, headers=h)
    assert r.status_code == 200, r.text
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(r.content)).pages)
    assert "Строка с" in text and "\x01" not in text


# -- sharing with a lawyer -----------------------------------------------------------


async def test_sharing_permission_matrix(client, settings, alice):
    def as_(user, role=None):
        extra = {"role": role} if role else None
        return {"Authorization": f"Bearer {mint_token(settings, user_id=user, extra=extra)}"}

    owner = as_(alice)
    lawyer_id, other_lawyer_id, plain_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    lawyer = as_(lawyer_id, "lawyer")
    other_lawyer, plain = as_(other_lawyer_id, "lawyer"), as_(plain_id)
    cid = (
        await client.post(CONV, json={"title": "Дело", "initial_message": "вопрос"}, headers=owner)
    ).json()["id"]
    for grantee in (lawyer_id, plain_id):
        r = await client.post(f"{CONV}/{cid}/shares", json={"user_id": str(grantee)}, headers=owner)
        assert r.status_code == 201 and r.json()["user_id"] == str(grantee)
    listed = (await client.get(f"{CONV}/{cid}/shares", headers=owner)).json()
    assert {s["user_id"] for s in listed} == {str(lawyer_id), str(plain_id)}

    reads = [("GET", f"{CONV}/{cid}", None), ("GET", f"{CONV}/{cid}/export", None)]
    writes = [
        ("PATCH", f"{CONV}/{cid}", {"title": "чужое"}),
        ("DELETE", f"{CONV}/{cid}", None),
        ("POST", f"{CONV}/{cid}/messages", {"message_content": "я юрист"}),
        ("POST", f"{CONV}/{cid}/reply", None),
        ("POST", f"{CONV}/{cid}/regenerate", None),
        ("POST", f"{CONV}/{cid}/shares", {"user_id": str(uuid.uuid4())}),
        ("GET", f"{CONV}/{cid}/shares", None),
        ("DELETE", f"{CONV}/{cid}/shares/{lawyer_id}", None),
    ]
    for method, url, body in reads:
        assert (await client.request(method, url, json=body, headers=lawyer)).status_code == 200
        for stranger in (other_lawyer, plain):
            r = await client.request(method, url, json=body, headers=stranger)
            assert r.status_code == 404, (method, url)
    for method, url, body in writes:
        for who in (lawyer, other_lawyer, plain):
            r = await client.request(method, url, json=body, headers=who)
            assert r.status_code == 404, (method, url, r.text)
    shared = (await client.get(f"{CHAT}/shared", headers=lawyer)).json()
    assert [c["id"] for c in shared] == [cid]
    assert (await client.get(f"{CHAT}/shared", headers=plain)).json() == []
    conv = (await client.get(f"{CONV}/{cid}", headers=owner)).json()
    assert (conv["title"], conv["status"], conv["messages_count"]) == ("Дело", "active", 1)

    # Revocation is immediate.
    assert (
        await client.delete(f"{CONV}/{cid}/shares/{lawyer_id}", headers=owner)
    ).status_code == 204
    assert (await client.get(f"{CONV}/{cid}", headers=lawyer)).status_code == 404
    assert (await client.get(f"{CHAT}/shared", headers=lawyer)).json() == []
    assert (
        await client.delete(f"{CONV}/{cid}/shares/{lawyer_id}", headers=owner)
    ).status_code == 404
    r = await client.post(f"{CONV}/{cid}/shares", json={"user_id": str(alice)}, headers=owner)
    assert r.status_code == 422
