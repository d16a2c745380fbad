"""401s for bad tokens on every route, and 422/413 for bad input, never a 500."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from httpx_ws import WebSocketDisconnect, aconnect_ws
from pydantic import ValidationError
from typer.testing import CliRunner

from advocata_chat.config import DEV_JWT_SECRET, Settings

BASE = "/api/v1/chat/conversations"
# Which routes need a token, and who may use each, is checked route by route in test_authz.py.


def hs(settings, **claims) -> str:
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


async def test_bad_tokens_are_401_with_a_reason(client, settings):
    now = int(time.time())
    sub = str(uuid.uuid4())
    cases = {
        "Basic dXNlcjpwYXNz": "missing bearer",
        "Bearer not-a-jwt": "malformed",
        f"Bearer {hs(settings, sub=sub, exp=now - 10)}": "expired",
        f"Bearer {hs(settings, sub=sub)}": "'exp'",
        f"Bearer {hs(settings, exp=now + 60)}": "'sub'",
        f"Bearer {hs(settings, sub='alice', exp=now + 60)}": "not a user id",
        f"Bearer {jwt.encode({'sub': sub, 'exp': now + 60}, 'x' * 32, 'HS256')}": "invalid",
        f"Bearer {jwt.encode({'sub': sub, 'exp': now + 60}, None, 'none')}": "unsupported",
    }
    for header, reason in cases.items():
        r = await client.get(BASE, headers={"Authorization": header})
        assert r.status_code == 401, header
        assert reason in r.json()["error"].lower(), (header, r.json())


def rsa_key(bits: int = 2048) -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, public


async def test_rs256_tokens_from_the_platform(make_client):
    key, public = rsa_key()
    user = uuid.uuid4()
    token = jwt.encode({"sub": str(user), "exp": int(time.time()) + 60}, key, algorithm="RS256")
    async with make_client(jwt_public_key=public) as client:
        r = await client.get(BASE, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["total"] == 0
    # Without the configured key the same token is refused.
    async with make_client() as client:
        r = await client.get(BASE, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401


STRONG = "k7Qm2vX9pLr4Tw8Zb3Nc6Hy1Jd5Fg0Se"
FOREVER = 4_102_444_800  # 2100-01-01
PUBLIC_KEY = rsa_key()[1]
PROD = {"advocata_env": "production"}


async def test_the_forged_admin_token_of_the_issue_is_refused_in_production(make_client):
    """ADVOCATA_ENV=production with the platform's public key and no secret of our own: an
    HS256 token signed with the public placeholder secret used to decode to an admin."""
    key, public = rsa_key()
    user = str(uuid.uuid4())
    forged = jwt.encode({"sub": user, "exp": FOREVER, "role": "admin"}, DEV_JWT_SECRET, "HS256")
    genuine = jwt.encode({"sub": user, "exp": FOREVER, "role": "admin"}, key, "RS256")
    summary = "/api/v1/chat/feedback/summary"
    for algorithms in ([], ["RS256"]):  # derived from the configured keys, or set explicitly
        async with make_client(
            advocata_env="production", jwt_public_key=public, jwt_algorithms=algorithms
        ) as client:
            assert client.app.state.runtime.settings.jwt_algorithms == ["RS256"]
            for path in (summary, BASE):
                r = await client.get(path, headers={"Authorization": f"Bearer {forged}"})
                assert r.status_code == 401, r.text
                assert r.json()["error"] == "Unsupported token algorithm: HS256"
            r = await client.get(summary, headers={"Authorization": f"Bearer {genuine}"})
            assert r.status_code == 200 and r.json()["scope"] == "all"
            async with aconnect_ws(
                f"http://test/ws/chat/{uuid.uuid4()}?token={forged}", client
            ) as ws:
                assert "algorithm" in (await ws.receive_json())["error"]
                with pytest.raises(WebSocketDisconnect) as closed:
                    await ws.receive_text()
                assert closed.value.code == 4401


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (PROD, "JWT_SECRET must be set to a real secret"),
        ({**PROD, "jwt_algorithms": "HS256"}, "public placeholder"),
        ({**PROD, "jwt_secret": "changeme"}, "too weak"),
        ({**PROD, "jwt_secret": "s" * 40}, "too weak"),
        ({**PROD, "jwt_secret": STRONG[:31]}, "too weak"),
        ({"jwt_algorithms": "RS256"}, "JWT_PUBLIC_KEY is not set"),
        ({"jwt_algorithms": "HS256,ES256"}, "jwt_algorithms"),
        ({"jwt_algorithms": "none"}, "jwt_algorithms"),
        ({"jwt_public_key": "-----BEGIN PUBLIC KEY-----\nnope\n"}, "not a PEM"),
        ({"jwt_public_key": rsa_key(1024)[1]}, "at least 2048 bits"),
        ({"jwt_public_key": PUBLIC_KEY, "jwt_algorithms": "HS256"}, "does not include RS256"),
        ({**PROD, "jwt_public_key": PUBLIC_KEY, "jwt_algorithms": "HS256,RS256"}, "placeholder"),
    ],
)
def test_weak_auth_configurations_refuse_to_start(values, reason):
    with pytest.raises(ValidationError, match=reason):
        Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("values", "accepted"),
    [
        ({}, ["HS256"]),  # development: the placeholder secret is fine on a laptop
        ({**PROD, "jwt_secret": STRONG}, ["HS256"]),
        ({**PROD, "jwt_public_key": PUBLIC_KEY}, ["RS256"]),  # the placeholder verifies nothing
        ({**PROD, "jwt_public_key": PUBLIC_KEY, "jwt_secret": STRONG}, ["HS256", "RS256"]),
        ({"jwt_public_key": PUBLIC_KEY}, ["HS256", "RS256"]),
        (
            {"jwt_public_key": PUBLIC_KEY.replace("\n", "\\n"), "jwt_algorithms": " rs256 "},
            ["RS256"],
        ),
    ],
)
def test_accepted_algorithms_follow_the_configured_keys(values, accepted):
    assert Settings(_env_file=None, **values).jwt_algorithms == accepted


def test_serve_refuses_a_weak_configuration_with_the_reason(monkeypatch):
    from advocata_chat.cli import app
    from advocata_chat.config import get_settings

    monkeypatch.setenv("ADVOCATA_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", "changeme")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["serve", "--port", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "JWT_SECRET is too weak for production" in result.stderr


async def test_claims_are_strict_and_canonical(make_client):
    user = uuid.uuid4()

    def token(settings, **claims):
        return hs(settings, **{"sub": str(user), "exp": int(time.time()) + 60, **claims})

    async def status(client, jwt_):
        r = await client.get(BASE, headers={"Authorization": f"Bearer {jwt_}"})
        return r.status_code, r.json().get("error", "")

    async with make_client(ws=False) as client:
        s = client.app.state.runtime.settings
        refused = [
            ("audience", token(s, aud="other")),  # no JWT_AUDIENCE: a token for someone else
            ("not a user id", token(s, sub=user.hex)),
            ("not a user id", token(s, sub=user.urn)),
            ("not a user id", token(s, sub=str(user).upper())),
            ("not a user id", token(s, sub="{" + str(user) + "}")),
            ("'exp' must be a number", token(s, exp="9999999999")),
            ("'iat' must be a number", token(s, iat="1")),
        ]
        for reason, jwt_ in refused:
            code, error = await status(client, jwt_)
            assert code == 401 and reason in error, (reason, error)
        assert (await status(client, token(s)))[0] == 200
        assert (await status(client, token(s, exp=time.time() + 60.5)))[0] == 200
    async with make_client(ws=False, jwt_audience="advocata") as client:
        s = client.app.state.runtime.settings
        assert (await status(client, token(s, aud="advocata")))[0] == 200
        assert (await status(client, token(s, aud="other")))[0] == 401
        assert "'aud'" in (await status(client, token(s)))[1]


async def test_bad_input_is_422_with_one_body_shape(client, auth, alice):
    h = auth(alice)
    conv = (await client.post(BASE, json={}, headers=h)).json()
    cid = conv["id"]
    long = "я" * 8001
    cases = [
        ("GET", BASE, {"params": {"limit": 0}}),
        ("GET", BASE, {"params": {"limit": 101}}),
        ("GET", BASE, {"params": {"limit": "many"}}),
        ("GET", BASE, {"params": {"offset": -1}}),
        ("GET", BASE, {"params": {"status": "frozen"}}),
        ("GET", f"{BASE}/not-a-uuid", {}),
        ("POST", f"{BASE}/not-a-uuid/messages", {"json": {"message_content": "x"}}),
        ("POST", f"{BASE}/{cid}/messages", {"json": {"message_content": ""}}),
        ("POST", f"{BASE}/{cid}/messages", {"json": {"message_content": "   \n"}}),
        ("POST", f"{BASE}/{cid}/messages", {"json": {"message_content": long}}),
        ("POST", f"{BASE}/{cid}/messages", {"json": {"use_rag": True}}),
        ("POST", f"{BASE}/{cid}/messages", {"json": {"message_content": 5}}),
        ("POST", f"{BASE}/{cid}/messages", {"content": b"{not json"}),
        ("POST", f"{BASE}/{cid}/messages", {"content": b"plain text"}),
        ("POST", BASE, {"json": {"initial_message": long}}),
        ("POST", BASE, {"json": {"title": "t" * 201}}),
        ("POST", BASE, {"json": ["not", "an", "object"]}),
        ("PATCH", f"{BASE}/{cid}", {"json": {"status": "deleted"}}),
    ]
    for method, url, kwargs in cases:
        r = await client.request(method, url, headers=h, **kwargs)
        assert r.status_code == 422, (method, url, kwargs, r.text)
        body = r.json()
        assert body["code"] == "validation_error" and body["error"], body
    # None of the refused sends stored anything.
    after = (await client.get(f"{BASE}/{cid}", headers=h)).json()
    assert after["messages_count"] == 0 and after["messages"] == []


async def test_oversized_body_is_413(make_client, auth, alice):
    async with make_client(max_request_bytes=2000) as client:
        r = await client.post(BASE, json={"initial_message": "ы" * 3000}, headers=auth(alice))
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


async def test_unknown_route_uses_the_same_error_body(client):
    r = await client.get("/api/v1/nope")
    assert r.status_code == 404 and r.json() == {"error": "Not Found", "code": "not_found"}


async def test_a_body_that_cannot_be_parsed_is_a_422_like_any_bad_body(client, auth, alice):
    # Found by Schemathesis: FastAPI refuses these with a bare 400 that no route declares.
    cases = [
        ("/api/v1/search", "application/json", b"\xff"),
        ("/api/v1/documents", "multipart/form-data; boundary=x", b"--x\r\nbroken"),
    ]
    for url, media_type, content in cases:
        headers = {**auth(alice), "content-type": media_type}
        r = await client.post(url, content=content, headers=headers)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["code"] == "validation_error" and r.json()["error"]
