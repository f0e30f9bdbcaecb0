"""The project's JWTs, HS256-signed with its secret: minted for local development and
tests (the watch command, test users), and verified the way Supabase Realtime
verifies them, with the same refusal messages."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

SIGNING_ALGORITHMS = ["HS256", "HS384", "HS512"]
# Supabase's API keys of the newer kind are not JWTs; its gateway stands them in for
# the anon key, and so does the relay.
OPAQUE_API_KEY_PREFIX = "sb_"


@dataclass(frozen=True)
class TokenRefused(Exception):
    """`code` and `message` as Supabase Realtime words them; `reason` joins them as its
    join refusals do."""

    code: str
    message: str

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.message}"

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Identity:
    """Who a token says the caller is. `exp` is None only for an opaque API key."""

    claims: Mapping[str, Any]
    token: str

    @property
    def role(self) -> str:
        return str(self.claims.get("role", ""))

    @property
    def subject(self) -> str | None:
        sub = self.claims.get("sub")
        return None if sub is None else str(sub)

    @property
    def exp(self) -> int | None:
        exp = self.claims.get("exp")
        return None if exp is None else int(exp)


def mint(secret: str, claims: Mapping[str, Any]) -> str:
    return jwt.encode(dict(claims), secret, algorithm="HS256")


def mint_user_token(
    secret: str,
    user_id: uuid.UUID | str,
    *,
    email: str | None = None,
    expires_in: float = 3600,
    now: float | None = None,
) -> str:
    """A token shaped like the access token GoTrue gives a signed-in user."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": "authenticated",
        "role": "authenticated",
        "sub": str(user_id),
        "iat": issued,
        "exp": int(issued + expires_in),
        "aal": "aal1",
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    if email is not None:
        claims["email"] = email
    return mint(secret, claims)


def mint_anon_key(secret: str) -> str:
    """The claims of the Supabase CLI's local anon key (the key supabase-js is created
    with), signed with `secret`."""
    return mint(secret, {"iss": "supabase-demo", "role": "anon", "exp": 1983812996})


def _anonymous(token: str) -> Identity:
    return Identity(claims={"role": "anon"}, token=token)


def verify(token: str, secret: str, *, now: float | None = None) -> Identity:
    """The claims of a valid, unexpired token that names a role; TokenRefused otherwise.
    An opaque `sb_` API key stands for the anon role."""
    token = "".join(token.split())
    if token.startswith(OPAQUE_API_KEY_PREFIX):
        return _anonymous(token)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise TokenRefused("MalformedJWT", "The token provided is not a valid JWT") from None
    if header.get("alg") not in SIGNING_ALGORITHMS:
        raise TokenRefused(
            "JwtSignerError",
            "Failed to generate JWT signer, check your JWT secret or JWKS configuration",
        )
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=SIGNING_ALGORITHMS,
            # Supabase checks `exp` itself (below) and neither `nbf` nor the audience.
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise TokenRefused("JwtSignatureError", "Failed to validate JWT signature") from None
    except jwt.PyJWTError:
        raise TokenRefused("MalformedJWT", "The token provided is not a valid JWT") from None
    if "role" not in claims or "exp" not in claims:
        raise TokenRefused("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise TokenRefused("InvalidJWTToken", "Token expiration time is invalid")
    claims["exp"] = round(exp)
    current = int(time.time() if now is None else now)
    if claims["exp"] <= current:
        raise TokenRefused("InvalidJWTToken", expired_message(claims["exp"], current))
    return Identity(claims=claims, token=token)


def expired_message(exp: int, now: float) -> str:
    return f"Token has expired {int(now) - exp} seconds ago"
