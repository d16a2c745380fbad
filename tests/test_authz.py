"""Authorization, generated from the app's route table and the WebSocket's client frame types.

Every route is public (listed below) or needs a token, and every route that needs one is
classified in RULES: a route added tomorrow fails `test_every_route_is_public_or_classified`
until it is, and is then checked like the others. For each authenticated route:
- no token (or an expired or forged one): 401;
- another user, a lawyer without a share, and a plain user with a share (shares grant
  nothing without the lawyer role): 404 on anything of Alice's, the same answer as for an id
  that does not exist, with and without `Accept: text/event-stream` (SSE); on their own
  collections, exactly what they saw before Alice had anything;
- a lawyer Alice shared the conversation with: the reads marked `lawyer_reads` (200), every
  other route 404;
- Alice's own data is unchanged by all of it, and Alice herself is not refused.
Every WebSocket client frame type is refused the same way (the socket is the owner's).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import jwt
import pytest
from httpx_ws import WebSocketDisconnect, aconnect_ws
from starlette.routing import Mount

from advocata_chat import speech
from advocata_chat import ws as chat_ws
from advocata_chat.app import create_app
from advocata_chat.auth import mint_token
from advocata_chat.config import Settings
from advocata_chat.deps import current_principal

try:  # FastAPI >= 0.16x keeps included routers nested; this flattens them.
    from fastapi.routing import iter_route_contexts
except ImportError:  # older FastAPI: app.routes is already flat

    def iter_route_contexts(routes):
        return routes


CHAT = "/api/v1/chat"
C = f"{CHAT}/conversations/{{conversation_id}}"
SECRET_QUESTION = "Алиса спрашивает про расписку Гусева на 77 000 рублей"
SECRET_DOC = (
    "Расписка. Гусев Олег Петрович получил от Алисы 77 000 рублей. Вернуть до 1 мая.".encode()
)
# A real recording (eSpeak NG's Russian voice) for the voice route.
SPOKEN_QUESTION = speech.offline("Что в расписке?", fmt="wav")
PUBLIC = {
    ("GET", "/"),  # redirects to /docs
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/playground"),
    ("GET", "/playground/{name}"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}


@pytest.fixture(scope="module")
async def client(make_settings, openai_database_url, openai_stub):
    """One app for the module's REST checks (each builds its own users and data). The
    OpenAI-protocol stub answers and embeds at once; the offline embedder would make each
    of these worlds take seconds."""
    settings = make_settings(
        database_url=openai_database_url,
        openai_base_url=openai_stub.base_url,
        openai_model="stub-model",
        openai_max_retries=0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            c.app = app
            yield c


@pytest.fixture(autouse=True)
def _plain_stub(stub):
    """Whatever an earlier test left the stub doing, it answers normally here."""


def _needs_token(dependant) -> bool:
    return any(d.call is current_principal or _needs_token(d) for d in dependant.dependencies)


def _route_table():
    http, authenticated, sockets = [], [], []
    for route in iter_route_contexts(create_app(Settings(_env_file=None)).routes):
        if isinstance(getattr(route, "original_route", route), Mount):  # the docs' static files
            continue
        if route.methods is None:  # a WebSocket route
            sockets.append(route.path)
            continue
        for method in sorted(route.methods - {"HEAD"}):
            http.append((method, route.path))
            dependant = getattr(route, "dependant", None)
            if dependant is not None and _needs_token(dependant):
                authenticated.append((method, route.path))
    return http, authenticated, sockets


HTTP_ROUTES, AUTHENTICATED, SOCKETS = _route_table()


@dataclass
class World:
    """Alice's conversation (a question and its answer, rated), shared with a lawyer and
    with a plain user, and her document; the others have nothing."""

    people: dict[str, uuid.UUID]
    headers: dict[str, dict[str, str]]
    cid: str = ""
    question_id: str = ""
    answer_id: str = ""
    document_id: str = ""
    voice_upload_id: str = ""  # a recording of Alice's waiting for a `voice` frame
    new_grantee: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class Rule:
    # Whose object the path names: "conversation" and "document" are Alice's; "own" is the
    # caller's own collection (nothing of Alice's in the path).
    scope: str
    lawyer_reads: bool = False  # a lawyer Alice shared with may use it (own: sees hers listed)
    creates: bool = False  # an "own" route that creates something of the caller's
    body: Callable[[World], dict] | None = None
    upload: bool = False
    message: str = "answer"  # which of Alice's messages {message_id} names
    params: dict | None = None
    # A multipart body of its own: (files, form fields).
    multipart: Callable[[World], tuple[dict, dict]] | None = None


RULES: dict[tuple[str, str], Rule] = {
    ("POST", f"{CHAT}/conversations"): Rule(
        "own", creates=True, body=lambda w: {"initial_message": "мой вопрос", "title": "моё"}
    ),
    ("GET", f"{CHAT}/conversations"): Rule("own"),
    ("GET", C): Rule("conversation", lawyer_reads=True),
    ("PATCH", C): Rule("conversation", body=lambda w: {"title": "чужое", "status": "archived"}),
    ("DELETE", C): Rule("conversation"),
    ("POST", f"{C}/messages"): Rule(
        "conversation", body=lambda w: {"message_content": "дай посмотреть"}
    ),
    ("POST", f"{C}/reply"): Rule("conversation"),
    ("POST", f"{C}/regenerate"): Rule("conversation"),
    ("GET", f"{C}/stream"): Rule("conversation"),
    ("PATCH", f"{C}/messages/{{message_id}}"): Rule(
        "conversation", body=lambda w: {"content": "правка"}, message="question"
    ),
    ("PUT", f"{C}/messages/{{message_id}}/feedback"): Rule(
        "conversation", body=lambda w: {"rating": "down", "comment": "чужой отзыв"}
    ),
    ("GET", f"{C}/messages/{{message_id}}/feedback"): Rule("conversation"),
    ("DELETE", f"{C}/messages/{{message_id}}/feedback"): Rule("conversation"),
    ("GET", f"{C}/export"): Rule("conversation", lawyer_reads=True),
    ("POST", f"{C}/shares"): Rule("conversation", body=lambda w: {"user_id": w.new_grantee}),
    ("GET", f"{C}/shares"): Rule("conversation"),
    ("DELETE", f"{C}/shares/{{grantee_id}}"): Rule("conversation"),
    ("GET", f"{CHAT}/stats/tokens"): Rule("own"),
    ("GET", f"{CHAT}/templates"): Rule("own"),
    ("GET", f"{CHAT}/feedback/summary"): Rule("own"),
    ("GET", f"{CHAT}/shared"): Rule("own", lawyer_reads=True),
    ("POST", "/api/v1/documents"): Rule("own", creates=True, upload=True),
    ("GET", "/api/v1/documents"): Rule("own"),
    ("GET", "/api/v1/documents/{document_id}"): Rule("document"),
    ("DELETE", "/api/v1/documents/{document_id}"): Rule("document"),
    ("POST", "/api/v1/search"): Rule(
        "own", body=lambda w: {"query": "Гусев расписка 77 000", "top_k": 20}
    ),
    ("GET", "/api/v1/prompts"): Rule("own"),
    # Issue 16: photos with a message, a question by voice, an answer read aloud.
    ("POST", f"{C}/messages/upload"): Rule(
        "conversation",
        multipart=lambda w: (
            {"files": ("заметка.txt", "Заметка: залог 5 000 рублей.".encode())},
            {"message_content": "что в заметке?"},
        ),
    ),
    ("POST", f"{C}/voice"): Rule(
        "conversation", multipart=lambda w: ({"file": ("вопрос.wav", SPOKEN_QUESTION)}, {})
    ),
    ("POST", f"{C}/voice/uploads"): Rule(
        "conversation", multipart=lambda w: ({"file": ("вопрос.wav", SPOKEN_QUESTION)}, {})
    ),
    ("GET", f"{C}/messages/{{message_id}}/speech"): Rule(
        "conversation", lawyer_reads=True, params={"format": "wav"}
    ),
}

# One frame of each client type, as the owner would send it.
FRAMES: dict[str, Callable[[World], dict]] = {
    "message": lambda w: {"type": "message", "content": "дай посмотреть"},
    "voice": lambda w: {"type": "voice", "upload_id": w.voice_upload_id},
    "reply": lambda w: {"type": "reply"},
    "regenerate": lambda w: {"type": "regenerate"},
    "edit": lambda w: {"type": "edit", "message_id": w.question_id, "content": "правка"},
    "cancel": lambda w: {"type": "cancel"},
    "ping": lambda w: {"type": "ping"},
    "resume": lambda w: {"type": "resume", "message_id": w.answer_id, "offset": 3},
}
SOCKET_PATHS = {"/ws/chat/{conversation_id}"}
STRANGERS = ("bob", "other_lawyer", "plain_shared")


def test_every_route_is_public_or_classified():
    unclassified = sorted(set(AUTHENTICATED) - set(RULES))
    assert not unclassified, f"classify these routes in RULES: {unclassified}"
    stale = sorted(set(RULES) - set(AUTHENTICATED))
    assert not stale, f"RULES lists routes that are gone or need no token: {stale}"
    open_ = sorted(set(HTTP_ROUTES) - set(AUTHENTICATED) - PUBLIC)
    assert not open_, f"these routes need no token and are not listed as PUBLIC: {open_}"
    assert set(SOCKETS) == SOCKET_PATHS
    assert set(FRAMES) == set(chat_ws.CLIENT_FRAMES), "give every client frame type a FRAMES entry"
    # The discovery itself works: the route table held 26 such routes when this was written.
    assert len(AUTHENTICATED) >= 26


def _path(path: str, w: World, rule: Rule, *, missing: bool = False) -> str:
    gone = str(uuid.uuid4())
    return path.format(
        conversation_id=gone if missing and rule.scope == "conversation" else w.cid,
        document_id=gone if missing and rule.scope == "document" else w.document_id,
        message_id=w.question_id if rule.message == "question" else w.answer_id,
        grantee_id=w.people["lawyer"],
    )


async def _call(client, method, path, rule: Rule, w: World, who: str | None, **kw):
    headers = dict(w.headers[who]) if who else {}
    if kw.pop("sse", False):
        headers["Accept"] = "text/event-stream"
    extra = {}
    if rule.body:
        extra["json"] = rule.body(w)
    if rule.upload:
        extra["files"] = {"file": ("расписка.txt", SECRET_DOC)}
        extra["params"] = {"wait": True}
    if rule.multipart:
        extra["files"], extra["data"] = rule.multipart(w)
    if rule.params:
        extra["params"] = rule.params
    return await client.request(method, _path(path, w, rule, **kw), headers=headers, **extra)


def _people(settings) -> tuple[dict[str, uuid.UUID], dict[str, dict[str, str]]]:
    roles = {
        "alice": None,
        "bob": None,
        "lawyer": "lawyer",
        "other_lawyer": "lawyer",
        "plain_shared": None,
    }
    people = {name: uuid.uuid4() for name in roles}
    headers = {}
    for name, role in roles.items():
        extra = {"role": role} if role else None
        token = mint_token(settings, user_id=people[name], extra=extra)
        headers[name] = {"Authorization": f"Bearer {token}"}
    return people, headers


async def _build(client, w: World) -> None:
    h = w.headers["alice"]
    files = {"file": ("расписка.txt", SECRET_DOC)}
    r = await client.post("/api/v1/documents", params={"wait": True}, headers=h, files=files)
    assert r.status_code == 201, r.text
    w.document_id = r.json()["id"]
    body = {"title": "Дело Алисы", "initial_message": SECRET_QUESTION}
    r = await client.post(f"{CHAT}/conversations", json=body, headers=h)
    w.cid = r.json()["id"]
    r = await client.post(f"{CHAT}/conversations/{w.cid}/reply", headers=h)
    assert r.status_code == 200, r.text
    question, answer = r.json()["messages"]
    w.question_id, w.answer_id = question["id"], answer["id"]
    files = {"file": ("вопрос.wav", SPOKEN_QUESTION)}
    r = await client.post(f"{CHAT}/conversations/{w.cid}/voice/uploads", files=files, headers=h)
    assert r.status_code == 201, r.text
    w.voice_upload_id = r.json()["id"]
    r = await client.put(
        f"{CHAT}/conversations/{w.cid}/messages/{w.answer_id}/feedback",
        json={"rating": "up", "comment": "спасибо"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    for grantee in ("lawyer", "plain_shared"):
        r = await client.post(
            f"{CHAT}/conversations/{w.cid}/shares",
            json={"user_id": str(w.people[grantee])},
            headers=h,
        )
        assert r.status_code == 201, r.text


async def _alice_view(client, w: World) -> list:
    """Everything of Alice's a stranger's write could change."""
    h, conv = w.headers["alice"], f"{CHAT}/conversations/{w.cid}"
    reads = [
        client.get(conv, params={"include_superseded": True}, headers=h),
        client.get(f"{conv}/shares", headers=h),
        client.get(f"{conv}/messages/{w.answer_id}/feedback", headers=h),
        client.get("/api/v1/documents", headers=h),
        client.get(f"/api/v1/documents/{w.document_id}", headers=h),
        client.get(f"{CHAT}/conversations", params={"status": "archived"}, headers=h),
        client.get(f"{CHAT}/conversations", params={"status": "deleted"}, headers=h),
    ]
    return [(r.status_code, r.json()) for r in [await read for read in reads]]


def _world(settings) -> World:
    people, headers = _people(settings)
    return World(people=people, headers=headers)


@pytest.mark.parametrize(
    ("method", "path"), AUTHENTICATED, ids=[f"{m} {p}" for m, p in AUTHENTICATED]
)
async def test_route_needs_a_valid_token(client, settings, method, path):
    rule = RULES.get((method, path), Rule("own"))
    w = _world(settings)
    w.cid = w.document_id = w.question_id = w.answer_id = str(uuid.uuid4())
    bad = {
        None: None,
        "expired": mint_token(settings, user_id=uuid.uuid4(), ttl_seconds=-60),
        "forged": jwt.encode({"sub": str(uuid.uuid4()), "exp": 4_102_444_800}, "x" * 40, "HS256"),
    }
    for name, token in bad.items():
        if token:
            w.headers[name] = {"Authorization": f"Bearer {token}"}
        r = await _call(client, method, path, rule, w, name)
        assert r.status_code == 401, (name, r.text)
        assert r.json()["code"] == "unauthorized" and "token" in r.json()["error"].lower()
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"), AUTHENTICATED, ids=[f"{m} {p}" for m, p in AUTHENTICATED]
)
async def test_route_authorization(client, settings, method, path):
    rule = RULES.get((method, path))
    if rule is None:
        pytest.fail(f"{method} {path} is not classified in RULES")
    w = _world(settings)
    watchers = (*STRANGERS, "lawyer")
    before = {}
    if rule.scope == "own" and not rule.creates:
        before = {who: (await _call(client, method, path, rule, w, who)).json() for who in watchers}
    await _build(client, w)
    alice = await _alice_view(client, w)

    for who in watchers:
        reader = who == "lawyer" and rule.lawyer_reads
        if rule.scope == "own" and rule.creates:
            r = await _call(client, method, path, rule, w, who)
            assert r.status_code == 201, (who, r.text)  # a new one of their own, never hers
            created = r.json()
            assert created["id"] not in (w.cid, w.document_id)
            if "user_id" in created:
                assert created["user_id"] == str(w.people[who])
        elif rule.scope == "own":
            after = (await _call(client, method, path, rule, w, who)).json()
            if reader:
                assert w.cid in json.dumps(after), who
            else:
                assert after == before[who], who  # nothing of Alice's shows up
        else:
            for sse in (False, True):
                r = await _call(client, method, path, rule, w, who, sse=sse)
                if reader:
                    assert r.status_code == 200, (who, r.text)
                    continue
                none = await _call(client, method, path, rule, w, who, sse=sse, missing=True)
                assert r.status_code == none.status_code == 404, (who, sse, r.text)
                assert r.json() == none.json(), (who, sse)
    assert await _alice_view(client, w) == alice, "a stranger's call changed Alice's data"

    r = await _call(client, method, path, rule, w, "alice")
    assert r.status_code < 500 and r.status_code not in (401, 404, 422), r.text


async def test_feedback_summary_counts_your_own_unless_admin_or_prompt_engineer(client, settings):
    w = _world(settings)
    roles = {"admin": "admin", "prompt_engineer": "prompt_engineer", "lawyer": "lawyer"}
    for role in roles:
        token = mint_token(settings, user_id=uuid.uuid4(), extra={"role": role})
        w.headers[role] = {"Authorization": f"Bearer {token}"}

    async def summaries():
        out = {}
        for who in ("alice", "bob", *roles):
            r = await client.get(f"{CHAT}/feedback/summary", headers=w.headers[who])
            assert r.status_code == 200, r.text
            out[who] = r.json()
        return out

    before = await summaries()
    await _build(client, w)  # Alice rates her answer 👍
    after = await summaries()
    assert (after["alice"]["scope"], after["alice"]["up"], after["alice"]["down"]) == ("mine", 1, 0)
    for who in ("bob", "lawyer"):
        assert after[who] == before[who] and after[who]["scope"] == "mine"
    for who in ("admin", "prompt_engineer"):
        assert after[who]["scope"] == "all"
        assert after[who]["up"] == before[who]["up"] + 1, who
        assert after[who]["down"] == before[who]["down"], who


async def _closed_with(ws_, code: int) -> dict:
    frame = json.loads(await ws_.receive_text())
    with pytest.raises(WebSocketDisconnect) as closed:
        await ws_.receive_text()
    assert closed.value.code == code, frame
    return frame


def _ws_url(w: World, who: str | None) -> str:
    query = ""
    if who:
        query = "?token=" + w.headers[who]["Authorization"].split()[1]
    return f"http://test/ws/chat/{w.cid}{query}"


@pytest.mark.parametrize("kind", chat_ws.CLIENT_FRAMES)
async def test_socket_frame_authorization(stub_client, settings, kind):
    async with stub_client() as client:
        w = _world(settings)
        await _build(client, w)
        alice = await _alice_view(client, w)
        frame = json.dumps(FRAMES[kind](w))
        for who, code in [(None, 4401), *((s, 4404) for s in (*STRANGERS, "lawyer"))]:
            async with aconnect_ws(_ws_url(w, who), client) as ws_:
                with contextlib.suppress(Exception):  # the server may have closed already
                    await ws_.send_text(frame)
                error = await _closed_with(ws_, code)
                assert error["type"] == "error", who
                assert error["code"] == ("unauthorized" if who is None else "not_found"), who
        assert await _alice_view(client, w) == alice, (
            f"a stranger's {kind} frame changed Alice's data"
        )

        # Alice's socket takes the frame (a turn may still refuse it: nothing to reply to).
        async with aconnect_ws(_ws_url(w, "alice"), client) as ws_:
            assert json.loads(await ws_.receive_text())["type"] == "connected"
            await ws_.send_text(frame)
            await ws_.send_text(json.dumps({"type": "ping"}))
            while (got := json.loads(await ws_.receive_text()))["type"] != "pong":
                assert got.get("code") not in ("unknown_frame", "validation_error"), got


@pytest.mark.parametrize("kind", chat_ws.CLIENT_FRAMES)
async def test_an_expired_token_closes_the_socket_on_any_frame(stub_client, settings, kind):
    async with stub_client() as client:
        w = _world(settings)
        await _build(client, w)
        alice = await _alice_view(client, w)
        token = w.headers["alice"]["Authorization"].split()[1]
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        rt = client.app.state.runtime
        now = [expires - 60.0]
        rt.clock = lambda: now[0]
        async with aconnect_ws(_ws_url(w, "alice"), client) as ws_:
            assert json.loads(await ws_.receive_text())["type"] == "connected"
            await ws_.send_text(json.dumps({"type": "ping"}))
            assert json.loads(await ws_.receive_text()) == {"type": "pong"}
            now[0] = expires  # the token expires while the socket is open
            await ws_.send_text(json.dumps(FRAMES[kind](w)))
            error = await _closed_with(ws_, 4401)
        assert error == {"type": "error", "error": "Token has expired", "code": "unauthorized"}
        assert await _alice_view(client, w) == alice  # the frame was not acted on
