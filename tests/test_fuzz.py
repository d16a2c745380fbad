"""Schemathesis over the app's own OpenAPI schema, against a real server, with a valid token:
no 5xx, and every response matches the schema."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from advocata_chat.auth import mint_token
from tests.server import Server


@pytest.fixture(scope="module")
def fuzz_server(database_url):
    # Limits off: a fuzzer sends far more than a person, and 429s are tested elsewhere.
    srv = Server(
        database_url, RATE_MESSAGES_PER_MINUTE="0", RATE_UPLOADS_PER_HOUR="0", TOKEN_QUOTA="0"
    ).wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")
CALLS = {"n": 0}


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    print(f"\nschemathesis: {CALLS['n']} generated requests, no 5xx, all schema-conformant")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_responses_match_the_schema(case, fuzz_server, settings_for_fuzz):
    CALLS["n"] += 1
    case.call_and_validate(
        base_url=fuzz_server.url,
        headers={"Authorization": f"Bearer {settings_for_fuzz}"},
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )


@pytest.fixture(scope="module")
def settings_for_fuzz(make_settings):
    return mint_token(make_settings(), user_id=uuid.uuid4())
