"""Bearer JWT authentication: HS256 with a shared secret, or RS256 with the platform's key."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from advocata_chat.config import Settings
from advocata_chat.errors import Unauthorized


def mint_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    ttl_seconds: int | None = None,
    extra: dict | None = None,
) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iat": now,
        "exp": now + (ttl_seconds or settings.jwt_dev_token_ttl_seconds),
        **(extra or {}),
    }
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    role: str | None  # the `role` claim, e.g. "lawyer"

    @property
    def lawyer(self) -> bool:
        return self.role == "lawyer"


def decode_token(settings: Settings, token: str) -> uuid.UUID:
    """Return the user id (`sub`) of a valid token, or raise Unauthorized."""
    return decode_principal(settings, token).user_id


def decode_principal(settings: Settings, token: str) -> Principal:
    """The user and role of a valid token, or raise Unauthorized."""
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        raise Unauthorized("Malformed token") from None
    # The algorithm is chosen by which key we hold, never by the token alone.
    if alg == "RS256" and settings.jwt_public_key:
        key = settings.jwt_public_key
    elif alg == "HS256":
        key = settings.jwt_secret.get_secret_value()
    else:
        raise Unauthorized(f"Unsupported token algorithm: {alg}")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=settings.jwt_audience,
            options={"require": ["exp", "sub"], "verify_aud": bool(settings.jwt_audience)},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token has expired") from None
    except jwt.MissingRequiredClaimError as e:
        raise Unauthorized(f"Token is missing the '{e.claim}' claim") from None
    except jwt.PyJWTError:
        raise Unauthorized("Invalid token") from None
    try:
        user_id = uuid.UUID(str(claims["sub"]))
    except ValueError:
        raise Unauthorized("Token subject is not a user id") from None
    role = claims.get("role")
    return Principal(user_id=user_id, role=role if isinstance(role, str) else None)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("Missing Authorization header (expected 'Bearer <token>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()
