"""Fan-out under load: a thousand subscribers at once, and a client that stops reading."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any

import psycopg

from relay.server import RelayServer, serve
from tests.relay.support import RawClient, User, new_user, relay_settings

SUBSCRIBERS = 1000
CONNECTS_AT_ONCE = 50


async def broadcast_to_each(
    database_url: str, users: list[User], rounds: int, size: int = 0
) -> None:
    """Message n (1..rounds) to every user's topic, all in one transaction, n-major."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            """
            select realtime.send(
              jsonb_build_object('user', u, 'n', n, 'padding', repeat('x', %s)),
              'UPDATE', 'user:' || u, true)
            from generate_series(1, %s) n, unnest(%s::uuid[]) u
            order by n
            """,
            (size, rounds, [u.id for u in users]),
        )
        await conn.commit()


async def join_all(
    relay: RelayServer, users: list[User], **connect_options: Any
) -> list[RawClient]:
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def join(user: User) -> RawClient:
        async with gate:
            client = await RawClient.connect(relay, **connect_options)
            _, reply = await client.join(user.topic, user.token())
            assert reply["payload"]["status"] == "ok", reply
            return client

    return list(await asyncio.gather(*(join(u) for u in users)))


async def read_own(client: RawClient, user: User, rounds: int) -> list[int]:
    """The message numbers this client receives until the last round; each one must be
    for this user."""
    seen: list[int] = []
    while not seen or seen[-1] < rounds:
        frame = await client.receive()
        assert frame["topic"] == f"realtime:{user.topic}"
        body = frame["payload"]["payload"]
        assert uuid.UUID(body["user"]) == user.id
        seen.append(body["n"])
    return seen


async def test_a_thousand_subscribers_each_get_only_their_own(
    relay: RelayServer, relay_database_url: str
) -> None:
    users = [new_user() for _ in range(SUBSCRIBERS)]
    async with asyncio.timeout(120):
        clients = await join_all(relay, users)
        try:
            assert relay.hub.subscriber_count() == SUBSCRIBERS
            rounds = 3
            readers = [
                asyncio.create_task(read_own(c, u, rounds))
                for c, u in zip(clients, users, strict=True)
            ]
            await broadcast_to_each(relay_database_url, users, rounds)
            results = await asyncio.gather(*readers)
            assert all(seen == [1, 2, 3] for seen in results)
        finally:
            await asyncio.gather(*(c.close() for c in clients))


def _small_receive_buffer_socket() -> socket.socket:
    """A client socket that takes little before TCP pushes back, so that a client that
    stops reading stalls the relay's writes to it quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_a_stalled_client_does_not_hold_back_the_others(relay_database_url: str) -> None:
    others = [new_user() for _ in range(20)]
    stalled_user = new_user()
    rounds = 20
    async with (
        asyncio.timeout(120),
        serve(relay_settings(relay_database_url, max_queued_frames=50)) as relay,
    ):
        clients = await join_all(relay, others)
        sock = _small_receive_buffer_socket()
        sock.connect(("127.0.0.1", relay.port))
        stalled = await RawClient.connect(relay, sock=sock, max_queue=1, close_timeout=0.5)
        await stalled.join(stalled_user.topic, stalled_user.token())
        try:
            # Baseline: how long the others take to get their messages.
            started = time.monotonic()
            readers = [
                asyncio.create_task(read_own(c, u, rounds))
                for c, u in zip(clients, others, strict=True)
            ]
            await broadcast_to_each(relay_database_url, others, rounds)
            await asyncio.gather(*readers)
            baseline_s = time.monotonic() - started

            # The stalled client never reads again; big messages pile up for it until
            # the relay drops it.
            for _ in range(40):
                await broadcast_to_each(relay_database_url, [stalled_user], 25, size=32_000)
                await asyncio.sleep(0.05)
                if relay.hub.subscriber_count(stalled_user.topic) == 0:
                    break
            assert relay.hub.subscriber_count(stalled_user.topic) == 0, (
                "the stalled client was never dropped"
            )

            started = time.monotonic()
            readers = [
                asyncio.create_task(read_own(c, u, rounds))
                for c, u in zip(clients, others, strict=True)
            ]
            await broadcast_to_each(relay_database_url, others, rounds)
            await asyncio.gather(*readers)
            while_stalled_s = time.monotonic() - started
            assert while_stalled_s < max(10 * baseline_s, 2.0), (baseline_s, while_stalled_s)
        finally:
            await asyncio.gather(*(c.close() for c in [*clients, stalled]), return_exceptions=True)
