"""`python -m relay watch`: one user's live updates, printed as they arrive, through the
official Python Realtime client, so a developer can watch beside a real browser.

It mints that user's token with the project secret: local development only."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import TextIO

import psycopg
from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, RealtimeSubscribeStates
from realtime.types import BroadcastPayload

from relay.tokens import mint_user_token


def user_topic(user_id: uuid.UUID | str) -> str:
    """The per-user topic the database broadcasts a user's updates on."""
    return f"user:{user_id}"


def user_channel(client: AsyncRealtimeClient, user_id: uuid.UUID | str) -> AsyncRealtimeChannel:
    """The private channel of one user's updates, configured as the app joins it."""
    return client.channel(
        user_topic(user_id),
        {
            "config": {
                "private": True,
                "broadcast": {"ack": False, "self": False},
                "presence": {"key": "", "enabled": False},
            }
        },
    )


async def find_user_id(database_url: str, email: str) -> uuid.UUID:
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=5) as conn:
        cursor = await conn.execute("select id from auth.users where email = %s", (email,))
        row = await cursor.fetchone()
    if row is None:
        raise SystemExit(f"no user with email {email!r} in auth.users")
    return uuid.UUID(str(row[0]))


def format_message(message: BroadcastPayload, now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    payload = json.dumps(message.get("payload"), separators=(",", ":"), ensure_ascii=False)
    return f"{moment} {message.get('event')} {payload}"


async def watch(
    *,
    relay_url: str,
    jwt_secret: str,
    user_id: uuid.UUID,
    expires_in: float,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Prints each message until the channel ends; returns the exit status."""
    token = mint_user_token(jwt_secret, user_id, expires_in=expires_in)
    client = AsyncRealtimeClient(f"{relay_url.rstrip('/')}/realtime/v1", token)
    ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_message(message: BroadcastPayload) -> None:
        print(format_message(message), file=out, flush=True)

    def on_state(state: RealtimeSubscribeStates, error: Exception | None) -> None:
        detail = f": {error}" if error else ""
        print(f"# {user_topic(user_id)} {state.value}{detail}", file=err, flush=True)
        if state != RealtimeSubscribeStates.SUBSCRIBED and not ended.done():
            ended.set_result(0 if state == RealtimeSubscribeStates.CLOSED else 1)

    channel = user_channel(client, user_id)
    channel.on_broadcast("*", on_message)
    try:
        await channel.subscribe(on_state)
        return await ended
    finally:
        await client.close()
