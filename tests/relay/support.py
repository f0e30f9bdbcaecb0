"""What the relay's tests share: tokens, test users, the per-user topic policy, writing
messages as the database's triggers do, and a bare protocol client."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from websockets.asyncio.client import ClientConnection, connect

from relay.server import RelayServer
from relay.settings import DEFAULT_JWT_SECRET, RelaySettings
from relay.tokens import mint_anon_key, mint_user_token

SECRET = DEFAULT_JWT_SECRET
WAIT_S = 10.0

# The policy the migrations give `realtime.messages` (a user reads the private topic
# `user:<own id>`); created only where the database has no read policy there yet.
USER_TOPIC_POLICY = """
create policy "relay tests: users receive broadcasts on their own topic" on realtime.messages
  for select to authenticated
  using (extension = 'broadcast' and (select realtime.topic()) = 'user:' || (select auth.uid())::text)
"""


def ensure_user_topic_policy(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "select exists (select 1 from pg_policies where schemaname = 'realtime' "
            "and tablename = 'messages' and cmd in ('SELECT', 'ALL'))"
        ).fetchone()
        if not (row and row[0]):
            conn.execute(USER_TOPIC_POLICY)


def relay_settings(database_url: str, **overrides: Any) -> RelaySettings:
    return RelaySettings(database_url=database_url, jwt_secret=SECRET, port=0, **overrides)


@dataclass(frozen=True)
class User:
    id: uuid.UUID

    @property
    def topic(self) -> str:
        return f"user:{self.id}"

    def token(self, expires_in: float = 3600) -> str:
        return mint_user_token(SECRET, self.id, expires_in=expires_in)


def new_user() -> User:
    return User(uuid.uuid4())


def anon_key() -> str:
    return mint_anon_key(SECRET)


def without_id(payload: dict[str, Any]) -> dict[str, Any]:
    """A broadcast's payload less the top-level "id" that `realtime.send` adds when the
    payload has none (Supabase Realtime migration
    20251103001201_broadcast_send_include_payload_id)."""
    assert "id" in payload, f"realtime.send adds an id: {payload}"
    return {key: value for key, value in payload.items() if key != "id"}


async def send_messages(
    database_url: str,
    topic: str,
    messages: list[tuple[str, dict[str, Any]]],
    *,
    private: bool = True,
) -> None:
    """Each (event, payload) through `realtime.send`, one transaction each, in order."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for event, payload in messages:
            await conn.execute(
                "select realtime.send(%s, %s, %s, %s)", (Jsonb(payload), event, topic, private)
            )


class RawClient:
    """A websocket speaking vsn 1.0.0 frames by hand, for what the official clients
    hide: exact replies, refusals and load."""

    def __init__(self, websocket: ClientConnection):
        self.ws = websocket
        self._refs = 0

    @classmethod
    async def connect(
        cls, relay: RelayServer, apikey: str | None = None, **options: Any
    ) -> RawClient:
        key = anon_key() if apikey is None else apikey
        url = (
            f"ws://{relay.settings.host}:{relay.port}/realtime/v1/websocket?apikey={key}&vsn=1.0.0"
        )
        return cls(await connect(url, **options))

    def next_ref(self) -> str:
        self._refs += 1
        return str(self._refs)

    async def push(
        self,
        topic: str,
        event: str,
        payload: Any,
        *,
        ref: str | None = None,
        join_ref: str | None = None,
    ) -> str:
        ref = ref or self.next_ref()
        frame = {
            "topic": topic,
            "event": event,
            "payload": payload,
            "ref": ref,
            "join_ref": join_ref,
        }
        await self.ws.send(json.dumps(frame))
        return ref

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            frame: dict[str, Any] = json.loads(await self.ws.recv())
        return frame

    async def join(
        self, topic: str, token: str | None, *, private: bool = True
    ) -> tuple[str, dict[str, Any]]:
        """Joins `realtime:<topic>`; returns the join ref and the server's reply."""
        payload: dict[str, Any] = {
            "config": {
                "broadcast": {"ack": False, "self": False},
                "presence": {"key": "", "enabled": False},
                "postgres_changes": [],
                "private": private,
            }
        }
        if token is not None:
            payload["access_token"] = token
        ref = self.next_ref()
        await self.push(f"realtime:{topic}", "phx_join", payload, ref=ref, join_ref=ref)
        return ref, await self.receive()

    async def close(self) -> None:
        await self.ws.close()


# Joins the relay must refuse, with the reason Supabase Realtime gives.
REFUSALS = [
    ("another user's topic", "Unauthorized: You do not have permissions to read"),
    ("bad signature", "JwtSignatureError: Failed to validate JWT signature"),
    ("expired token", "InvalidJWTToken: Token has expired"),
]


def refused_join(case: str) -> tuple[str, str]:
    """The (topic, token) of one REFUSALS case."""
    user, other = new_user(), new_user()
    if case == "another user's topic":
        return other.topic, user.token()
    if case == "bad signature":
        return user.topic, mint_user_token("not-the-project-secret-but-32-characters-long", user.id)
    return user.topic, user.token(expires_in=-10)
