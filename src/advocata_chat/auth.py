"""Bearer JWT authentication: HS256 with a shared secret, or RS256 with the platform's key.

Which algorithms are accepted is decided by the settings (`JWT_ALGORITHMS`, checked at
start-up by `accepted_algorithms`), never by the token's own header.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt

from advocata_chat.errors import Unauthorized

if TYPE_CHECKING:
    from advocata_chat.config import JwtAlgorithm, Settings


def accepted_algorithms(s: Settings) -> list[JwtAlgorithm]:
    """The token algorithms these settings accept, or ValueError for a weak combination.

    The placeholder secret counts as no secret: in production it verifies nothing, so a
    deployment with only JWT_PUBLIC_KEY accepts RS256 tokens and no HS256 at all.
    """
    from advocata_chat.config import DEV_JWT_SECRET

    production = s.advocata_env == "production"
    secret = s.jwt_secret.get_secret_value()
    has_secret = secret != DEV_JWT_SECRET
    if production and has_secret and _weak_secret(secret):
        raise ValueError(
            "JWT_SECRET is too weak for production: use at least 32 random characters "
            "(e.g. `openssl rand -hex 32`)"
        )
    if s.jwt_public_key:
        _check_public_key(s.jwt_public_key)
    algorithms = list(dict.fromkeys(s.jwt_algorithms))
    if not algorithms:  # unset: what the configured keys allow
        if has_secret or not production:
            algorithms.append("HS256")
        if s.jwt_public_key:
            algorithms.append("RS256")
    if not algorithms:
        raise ValueError(
            "JWT_SECRET must be set to a real secret when ADVOCATA_ENV=production (the "
            "placeholder is public), or JWT_PUBLIC_KEY for RS256 tokens from the platform; "
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if "HS256" in algorithms and production and not has_secret:
        raise ValueError(
            "JWT_ALGORITHMS has HS256 but JWT_SECRET is the public placeholder: set a real "
            "secret, or leave HS256 out, when ADVOCATA_ENV=production"
        )
    if "RS256" in algorithms and not s.jwt_public_key:
        raise ValueError("JWT_ALGORITHMS has RS256 but JWT_PUBLIC_KEY is not set")
    if s.jwt_public_key and "RS256" not in algorithms:
        raise ValueError("JWT_PUBLIC_KEY is set but JWT_ALGORITHMS does not include RS256")
    return algorithms


def _weak_secret(secret: str) -> bool:
    # HS256 wants a key of at least 256 bits (RFC 7518, 3.2); few distinct characters means
    # a made-up value ("xxxx…", "changeme…"), not random data.
    return len(secret.encode()) < 32 or len(set(secret)) < 10


def _check_public_key(pem: str) -> None:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ValueError("JWT_PUBLIC_KEY is not a PEM public key") from None
    if not isinstance(key, RSAPublicKey) or key.key_size < 2048:
        raise ValueError("JWT_PUBLIC_KEY must be an RSA public key of at least 2048 bits")


def mint_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    ttl_seconds: int | None = None,
    extra: dict | None = None,
) -> str:
    if "HS256" not in settings.jwt_algorithms:
        raise ValueError("JWT_ALGORITHMS does not accept HS256: tokens come from the platform")
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
    expires_at: float = float("inf")  # the `exp` claim, in seconds since the epoch

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
    if alg not in settings.jwt_algorithms:
        raise Unauthorized(f"Unsupported token algorithm: {alg}")
    key = settings.jwt_public_key if alg == "RS256" else settings.jwt_secret.get_secret_value()
    try:
        # `aud` is always verified: with no JWT_AUDIENCE, a token naming any audience is
        # meant for another service and is refused.
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=settings.jwt_audience,
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token has expired") from None
    except jwt.MissingRequiredClaimError as e:
        raise Unauthorized(f"Token is missing the '{e.claim}' claim") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("Token audience is not accepted") from None
    except jwt.PyJWTError:
        raise Unauthorized("Invalid token") from None
    for name in ("exp", "iat", "nbf"):
        # PyJWT reads "9999999999" (a string) as a time; the standard says a number.
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Unauthorized(f"Token claim '{name}' must be a number")
    return Principal(
        user_id=_user_id(claims["sub"]),
        role=claims["role"] if isinstance(claims.get("role"), str) else None,
        expires_at=float(claims["exp"]),
    )


def _user_id(sub: object) -> uuid.UUID:
    # Only the canonical form: a dashless or `urn:uuid:` spelling of the same id is refused.
    try:
        user_id = uuid.UUID(sub) if isinstance(sub, str) else None
    except ValueError:
        user_id = None
    if user_id is None or str(user_id) != sub:
        raise Unauthorized("Token subject is not a user id (a lowercase dashed UUID)")
    return user_id


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("Missing Authorization header (expected 'Bearer <token>')")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()
