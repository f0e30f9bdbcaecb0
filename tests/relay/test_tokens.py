"""Token minting and verification, with Supabase Realtime's refusal wording."""

from __future__ import annotations

import time
import uuid

import pytest

from relay.tokens import TokenRefused, mint, mint_anon_key, mint_user_token, verify
from tests.relay.support import SECRET


def test_a_minted_user_token_verifies() -> None:
    user_id = uuid.uuid4()
    identity = verify(mint_user_token(SECRET, user_id, email="a@example.com"), SECRET)
    assert (identity.role, identity.subject) == ("authenticated", str(user_id))
    assert identity.claims["email"] == "a@example.com"
    assert identity.exp is not None and identity.exp > time.time()


def test_the_local_anon_key_is_the_supabase_cli_one() -> None:
    """Same claims and secret as the Supabase CLI's well-known local anon key."""
    assert mint_anon_key(SECRET) == (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9."
        "CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"
    )


def test_an_opaque_api_key_stands_for_anon() -> None:
    identity = verify("sb_publishable_local", SECRET)
    assert (identity.role, identity.exp) == ("anon", None)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not a token", "MalformedJWT: The token provided is not a valid JWT"),
        (
            mint("x" * 32, {"role": "anon", "exp": 2**31}),
            "JwtSignatureError: Failed to validate JWT signature",
        ),
        (
            mint(SECRET, {"role": "anon"}),
            "InvalidJWTToken: Fields `role` and `exp` are required in JWT",
        ),
        (
            mint(SECRET, {"exp": 2**31}),
            "InvalidJWTToken: Fields `role` and `exp` are required in JWT",
        ),
        (mint(SECRET, {"role": "anon", "exp": 1000}), "InvalidJWTToken: Token has expired"),
    ],
)
def test_refusals(token: str, reason: str) -> None:
    with pytest.raises(TokenRefused) as refused:
        verify(token, SECRET)
    assert refused.value.reason.startswith(reason)
