"""The command line: `token` prints only a token that the API accepts."""

from __future__ import annotations

import uuid

import jwt
from typer.testing import CliRunner

from advocata_chat.cli import app


def test_token_prints_only_a_valid_token(monkeypatch, settings, make_client):
    user = uuid.uuid4()
    monkeypatch.setenv("JWT_SECRET", settings.jwt_secret.get_secret_value())
    from advocata_chat.config import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["token", "--user", str(user)])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token
    claims = jwt.decode(token, settings.jwt_secret.get_secret_value(), algorithms=["HS256"])
    assert claims["sub"] == str(user) and claims["exp"] > claims["iat"]


def test_token_refuses_a_bad_user_id():
    result = CliRunner().invoke(app, ["token", "--user", "alice"])
    assert result.exit_code != 0
