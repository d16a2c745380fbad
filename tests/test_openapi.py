"""The OpenAPI document is complete enough to generate a client from: every operation has a
summary, a description, tags, examples, and declares every error it can return.

What a route "can return" is derived from the route table, not listed by hand: its
dependencies (the bearer token), its parameters (a path id, query parameters, a JSON or
multipart body) and its handler's code (whether it runs a turn, whether it reaches the
database). A new route that forgets one of its errors fails here.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from advocata_chat.app import create_app
from advocata_chat.deps import current_principal, get_runtime

TURN_CALLS = {"TurnRequest"}  # what a handler builds to run (or stream) a turn
# Handlers that read only the runtime's in-memory state (templates, prompt files): they
# cannot lose the database. Checked below to name neither `sessions` nor `engine`.
IN_MEMORY = {"list_templates", "list_prompts"}


@pytest.fixture(scope="module")
def app(make_settings):
    return create_app(make_settings())


@pytest.fixture(scope="module")
def doc(app) -> dict:
    return app.openapi()


def _routes(app) -> list[APIRoute]:
    try:  # FastAPI >= 0.16x keeps included routers whole in `app.routes`
        from fastapi.routing import iter_route_contexts

        routes = [c.original_route for c in iter_route_contexts(app.routes)]
    except ImportError:
        routes = app.routes
    # The routers carry their prefixes themselves, so a route's path is its public path.
    return [r for r in routes if isinstance(r, APIRoute) and r.include_in_schema]


def _calls(dependant) -> set:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def _names(route: APIRoute) -> set[str]:
    return set(route.endpoint.__code__.co_names)


def _body_kinds(route: APIRoute) -> set[str]:
    if route.body_field is None:
        return set()
    from fastapi.params import Form

    kinds = set()
    for param in route.dependant.body_params:
        kinds.add("form" if isinstance(param.field_info, Form) else "json")
    return kinds


def can_return(route: APIRoute) -> dict[int, set[str]]:
    """The (status, codes) a route can return, from what it takes and what it calls."""
    need: dict[int, set[str]] = {}

    def add(status: int, *codes: str) -> None:
        need.setdefault(status, set()).update(codes)

    calls = _calls(route.dependant)
    d = route.dependant
    if current_principal in calls:
        add(401, "unauthorized")
    if d.path_params:
        add(404, "not_found")
    if d.path_params or d.query_params or d.body_params:
        add(422, "validation_error")
    kinds = _body_kinds(route)
    if kinds:
        add(413, "payload_too_large")
    if "form" in kinds:  # an upload: file type, content and the uploads-per-hour limit
        add(415, "unsupported_file")
        add(422, "unreadable_file", "empty_document")
        add(429, "rate_limited")
    if get_runtime in calls and route.name not in IN_MEMORY:
        add(503, "database_unavailable")
    if TURN_CALLS & _names(route):
        add(409, "conversation_not_active", "nothing_to_answer", "conversation_busy")
        add(429, "rate_limited", "quota_exceeded")
        add(502, "model_error")
        add(503, "model_unavailable")
        add(504, "model_timeout")
    return need


def _operation(doc: dict, route: APIRoute) -> dict:
    (method,) = route.methods
    return doc["paths"][route.path_format][method.lower()]


def _resolve(doc: dict, schema: dict) -> dict:
    if "$ref" in schema:
        return doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("type") == "array":
        return _resolve(doc, schema["items"])
    if "anyOf" in schema:  # an optional body: `Reply | None`
        (body,) = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _resolve(doc, body)
    return schema


def test_the_rules_see_the_routes_they_are_about(app):
    """The derivation is not vacuous: each rule applies to the routes it is meant for."""
    by_name = {r.name: can_return(r) for r in _routes(app)}
    assert by_name["send_message"].keys() >= {401, 404, 409, 413, 422, 429, 502, 503, 504}
    assert by_name["regenerate"][429] == {"rate_limited", "quota_exceeded"}
    assert by_name["upload_document"].keys() >= {413, 415, 422, 429, 503}
    assert 404 not in by_name["list_conversations"] and 413 not in by_name["get_conversation"]
    assert by_name["list_templates"] == {401: {"unauthorized"}}
    assert by_name["healthz"] == {}
    for name in IN_MEMORY:
        route = next(r for r in _routes(app) if r.name == name)
        assert not {"sessions", "engine"} & _names(route), f"{name} reaches the database"


def test_every_operation_has_a_summary_description_and_tags(app, doc):
    routes = _routes(app)
    operations = [op for ops in doc["paths"].values() for op in ops.values()]
    assert len(operations) == len(routes) > 25
    missing = [
        f"{route.methods} {route.path}: {what}"
        for route in routes
        for what, ok in (
            ("summary", route.summary),  # set, not derived from the function's name
            ("description", _operation(doc, route).get("description")),
            # One tag: a client generator makes an API class per tag.
            ("one tag", len(_operation(doc, route).get("tags", [])) == 1),
        )
        if not ok
    ]
    assert not missing, missing


def test_every_operation_declares_every_error_it_can_return(app, doc):
    problems = []
    for route in _routes(app):
        responses = _operation(doc, route)["responses"]
        for status, codes in can_return(route).items():
            declared = responses.get(str(status))
            if declared is None:
                problems.append(f"{route.path} {route.methods}: no {status}")
                continue
            media = declared["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, route.path
            for code in codes - set(media.get("examples", {})):
                problems.append(f"{route.path} {route.methods}: {status} without `{code}`")
        if 404 in map(int, responses) and not route.dependant.path_params:
            problems.append(f"{route.path} {route.methods}: 404 with no id to miss")
    assert not problems, problems


def test_error_examples_are_error_bodies_with_their_own_code(doc):
    seen = 0
    for ops in doc["paths"].values():
        for op in ops.values():
            for status, response in op["responses"].items():
                media = response.get("content", {}).get("application/json", {})
                for code, example in media.get("examples", {}).items():
                    assert int(status) >= 400
                    assert example["value"]["code"] == code
                    assert example["value"]["error"] and example["description"]
                    assert f"`{code}`" in response["description"]
                    seen += 1
    assert seen > 100


def test_every_body_has_an_example_in_russian(app, doc):
    cyrillic = re.compile("[а-яА-ЯёЁ]")
    missing = []
    for route in _routes(app):
        op = _operation(doc, route)
        bodies = []
        if "requestBody" in op:
            bodies.append(("request", op["requestBody"]["content"]))
        for status, response in op["responses"].items():
            if status.startswith("2") and "content" in response:
                bodies.append((status, response["content"]))
        for where, content in bodies:
            for media, spec in content.items():
                schema = _resolve(doc, spec.get("schema", {}))
                example = spec.get("example") or spec.get("examples") or schema.get("examples")
                if media.startswith(("multipart/", "application/pdf", "application/vnd", "audio/")):
                    continue  # a file: its fields are described instead
                if not example:
                    missing.append(f"{route.path} {route.methods} {where} {media}")
    assert not missing, missing
    # The examples are the seed contract's Russian ones, not placeholders.
    send = doc["components"]["schemas"]["SendMessage"]["examples"][0]
    assert cyrillic.search(send["message_content"])
    conversation = doc["components"]["schemas"]["ConversationOut"]["examples"][0]
    assert conversation["title"] == "Консультация по ДТП"


def test_every_schema_field_is_described(doc):
    missing = [
        f"{name}.{field}"
        for name, schema in doc["components"]["schemas"].items()
        for field, spec in schema.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert not missing, missing


async def test_home_redirects_to_the_docs_and_the_docs_load_nothing_from_elsewhere(client):
    home = await client.get("/")
    assert home.status_code in (302, 307) and home.headers["location"] == "/docs"
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        assets = re.findall(r"""(?:src|href)\s*[=:]\s*['"]([^'"]+)['"]""", html)
        assert assets and all(a.startswith("/") for a in assets), (page, assets)
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset


def _error_classes() -> set[type]:
    import advocata_chat.api_documents  # noqa: F401  (imports every module that defines errors)
    import advocata_chat.ws  # noqa: F401
    from advocata_chat.errors import AppError

    found, todo = set(), [AppError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_docs_api_md_covers_every_path_error_code_and_close_code(doc):
    """docs/api.md is the contract in the repository: it must not fall behind the code."""
    from advocata_chat import ws
    from advocata_chat.config import PROJECT_ROOT

    text = (PROJECT_ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    normalized = re.sub(r"\{[^}]*\}", "{}", text)
    paths = [re.sub(r"\{[^}]*\}", "{}", p).removeprefix("/api/v1/chat") for p in doc["paths"]]
    assert not [p for p in paths if p not in normalized]
    # The base classes' own codes are never sent: only their subclasses are raised.
    codes = {cls.code for cls in _error_classes()} - {"bad_request", "conflict"}
    assert len(codes) > 15 and not [c for c in codes if f"`{c}`" not in text]
    closes = [v for k, v in vars(ws).items() if k.startswith("CLOSE_")]
    assert len(closes) == 4 and not [c for c in closes if f"| {c} |" not in text]
