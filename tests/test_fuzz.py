"""Schemathesis over the app's own OpenAPI schema, against a real server, with a valid token:
no 5xx, and every response matches the schema."""

from __future__ import annotations

import uuid
from collections import Counter

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
# Requests sent per operation, and those whose checks passed: read by the test after the fuzzer.
SENT: Counter[str] = Counter()
PASSED: Counter[str] = Counter()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_responses_match_the_schema(case, fuzz_server, settings_for_fuzz):
    SENT[case.operation.label] += 1
    case.call_and_validate(
        base_url=fuzz_server.url,
        headers={"Authorization": f"Bearer {settings_for_fuzz}"},
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
    )
    PASSED[case.operation.label] += 1


def test_the_fuzzer_sent_requests_to_every_operation(api_schema):
    """Runs after the fuzzer (pytest keeps file order). A plugin that breaks before it sends
    anything, or an operation it never reached, fails here instead of passing silently."""
    operations = [op.ok().label for op in api_schema.get_all_operations()]
    print(
        f"\nschemathesis: {sum(SENT.values())} requests sent to {len(SENT)} of "
        f"{len(operations)} operations, {sum(PASSED.values())} passed every check"
    )
    missing = [op for op in operations if not SENT[op]]
    assert not missing, f"no request was generated for {missing}"
    assert sum(SENT.values()) >= 5 * len(operations)


@pytest.fixture(scope="module")
def settings_for_fuzz(make_settings):
    return mint_token(make_settings(), user_id=uuid.uuid4())
