"""Where the relay listens, which secret signs the project's JWTs and which database it
relays from. Every value has the local default a supabase-js client expects."""

from __future__ import annotations

import os
from dataclasses import dataclass

from devstack.settings import target

# The Supabase CLI's local API port: supabase-js created with `http://127.0.0.1:54321`
# opens its Realtime socket at `ws://127.0.0.1:54321/realtime/v1/websocket`.
DEFAULT_PORT = 54321
DEFAULT_HOST = "127.0.0.1"
# The Supabase CLI's local JWT secret, which signs its well-known local anon key.
DEFAULT_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


@dataclass(frozen=True)
class RelaySettings:
    database_url: str
    jwt_secret: str = DEFAULT_JWT_SECRET
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # Frames waiting for one client's socket; a client that falls this far behind is
    # disconnected so that it never holds back the others.
    max_queued_frames: int = 1000
    # After a lost database connection, messages inserted up to this long before the
    # newest delivered one are looked at again (a transaction's `inserted_at` is its
    # start, not its commit).
    catch_up_window_s: float = 60.0
    authorization_pool_size: int = 4


def jwt_secret_from_env() -> str:
    return os.environ.get("UTTER_JWT_SECRET", "").strip() or DEFAULT_JWT_SECRET


def port_from_env() -> int:
    raw = os.environ.get("UTTER_RELAY_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"UTTER_RELAY_PORT must be a port number, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise SystemExit(f"UTTER_RELAY_PORT must be between 0 and 65535, got {port}")
    return port


def from_env() -> RelaySettings:
    return RelaySettings(
        database_url=target().url,
        jwt_secret=jwt_secret_from_env(),
        host=os.environ.get("UTTER_RELAY_HOST", "").strip() or DEFAULT_HOST,
        port=port_from_env(),
    )
