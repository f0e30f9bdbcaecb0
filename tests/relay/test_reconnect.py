"""Losing the database: the relay reconnects with backoff and delivers what was
committed while it was away, once each, in order."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg.types.json import Jsonb

from relay.server import serve
from tests.relay.support import (
    RawClient,
    ensure_user_topic_policy,
    new_user,
    relay_settings,
    without_id,
)


async def test_listen_connection_killed_then_messages_written_meanwhile_arrive(
    fresh_database_url: str, server_url: str
) -> None:
    ensure_user_topic_policy(fresh_database_url)
    dbname = fresh_database_url.rsplit("/", 1)[1]
    user = new_user()
    async with (
        asyncio.timeout(60),
        serve(relay_settings(fresh_database_url)) as relay,
        await psycopg.AsyncConnection.connect(fresh_database_url, autocommit=True) as db,
        await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin,
    ):

        async def send(n: int) -> None:
            await db.execute(
                "select realtime.send(%s, 'UPDATE', %s, true)", (Jsonb({"n": n}), user.topic)
            )

        client = await RawClient.connect(relay)
        try:
            await client.join(user.topic, user.token())
            await send(1)
            assert without_id((await client.receive())["payload"]["payload"]) == {"n": 1}

            # Keep the relay out while messages are written: no new connections to this
            # database, then end the relay's LISTEN session.
            await admin.execute(f'alter database "{dbname}" with allow_connections false')
            listener = relay.feed.listener_pid
            await db.execute("select pg_terminate_backend(%s)", (listener,))
            await relay.feed.lost.wait()
            for n in range(2, 6):
                await send(n)
            await asyncio.sleep(0.3)  # a few failed reconnection attempts
            await admin.execute(f'alter database "{dbname}" with allow_connections true')

            received = [(await client.receive())["payload"]["payload"]["n"] for _ in range(4)]
            assert received == [2, 3, 4, 5]
            assert relay.feed.listener_pid not in (None, listener)
            assert relay.feed.reconnects == 1

            # Back to live delivery, with nothing delivered twice.
            await send(6)
            assert without_id((await client.receive())["payload"]["payload"]) == {"n": 6}
        finally:
            await client.close()
