"""Push latency: from the commit of a status broadcast (what every listener status
write commits: a row in realtime.messages) to a subscribed client's callback through
the relay (`python -m relay`, its own process), with 1 subscriber on the official
Python client and with 1,000 subscribers on raw websockets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

import psycopg
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from realtime.types import BroadcastPayload
from websockets.asyncio.client import ClientConnection, connect

from bench.common import Result, timing
from devstack.settings import ROOT
from relay.settings import DEFAULT_JWT_SECRET
from relay.tokens import mint_anon_key, mint_user_token
from relay.watch import user_channel

MESSAGES = 300
RATE_PER_SECOND = 50
SUBSCRIBERS = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_relay(database_url: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", "serve", "--port", str(port)],
        cwd=ROOT,
        env=os.environ | {"DATABASE_URL": database_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the relay did not start")


def _new_users(database_url: str, count: int) -> list[uuid.UUID]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select tests.create_user('push-' || n || '-' || gen_random_uuid() || '@example.com') "
            "from generate_series(1, %s) n",
            (count,),
        ).fetchall()
    return [uuid.UUID(str(r[0])) for r in rows]


def _broadcast(database_url: str, users: list[uuid.UUID], committed: dict[int, float]) -> None:
    with psycopg.connect(database_url) as conn:
        for n in range(MESSAGES):
            user = users[n % len(users)]
            conn.execute(
                "select realtime.send(jsonb_build_object('n', %s::int), 'UPDATE', %s, true)",
                (n, f"user:{user}"),
            )
            conn.commit()
            committed[n] = time.perf_counter()
            time.sleep(1 / RATE_PER_SECOND)


async def _one_official_subscriber(database_url: str, port: int) -> list[float]:
    (user,) = _new_users(database_url, 1)
    received: dict[int, float] = {}
    client = AsyncRealtimeClient(
        f"http://127.0.0.1:{port}/realtime/v1", mint_user_token(DEFAULT_JWT_SECRET, user)
    )
    subscribed = asyncio.Event()

    def on_message(message: BroadcastPayload) -> None:
        received[int(message["payload"]["n"])] = time.perf_counter()

    def on_state(state: RealtimeSubscribeStates, error: Exception | None) -> None:
        if state == RealtimeSubscribeStates.SUBSCRIBED:
            subscribed.set()

    channel = user_channel(client, user)
    channel.on_broadcast("*", on_message)
    await channel.subscribe(on_state)
    await asyncio.wait_for(subscribed.wait(), 10)
    committed: dict[int, float] = {}
    await asyncio.to_thread(_broadcast, database_url, [user], committed)
    await asyncio.sleep(1.0)
    await client.close()
    return [(received[n] - t) * 1000 for n, t in committed.items() if n in received]


async def _raw_subscriber(
    port: int, user: uuid.UUID, received: dict[int, float]
) -> ClientConnection:
    ws = await connect(
        f"ws://127.0.0.1:{port}/realtime/v1/websocket?apikey={mint_anon_key(DEFAULT_JWT_SECRET)}&vsn=1.0.0",
        max_queue=None,
    )
    await ws.send(
        json.dumps(
            {
                "topic": f"realtime:user:{user}",
                "event": "phx_join",
                "ref": "1",
                "join_ref": "1",
                "payload": {
                    "config": {
                        "private": True,
                        "broadcast": {"self": False},
                        "postgres_changes": [],
                    },
                    "access_token": mint_user_token(DEFAULT_JWT_SECRET, user),
                },
            }
        )
    )
    reply = json.loads(await ws.recv())
    if reply["payload"]["status"] != "ok":
        raise RuntimeError(f"join refused: {reply}")

    async def read() -> None:
        async for raw in ws:
            frame: dict[str, Any] = json.loads(raw)
            if frame.get("event") == "broadcast":
                received[int(frame["payload"]["payload"]["n"])] = time.perf_counter()

    asyncio.get_running_loop().create_task(read())
    return ws


async def _many_raw_subscribers(database_url: str, port: int) -> list[float]:
    users = _new_users(database_url, SUBSCRIBERS)
    received: dict[int, float] = {}
    gate = asyncio.Semaphore(50)

    async def join(user: uuid.UUID) -> ClientConnection:
        async with gate:
            return await _raw_subscriber(port, user, received)

    sockets = await asyncio.gather(*(join(u) for u in users))
    committed: dict[int, float] = {}
    await asyncio.to_thread(_broadcast, database_url, users, committed)
    await asyncio.sleep(1.0)
    for ws in sockets:
        await ws.close()
    return [(received[n] - t) * 1000 for n, t in committed.items() if n in received]


def run(url: str) -> list[Result]:
    port = _free_port()
    relay = _start_relay(url, port)
    try:
        one = asyncio.run(_one_official_subscriber(url, port))
        many = asyncio.run(_many_raw_subscribers(url, port))
    finally:
        relay.terminate()
        relay.wait(20)
    return [
        timing(
            "push",
            "1 subscriber (official Python client)",
            one,
            note=f"{len(one)}/{MESSAGES} delivered",
        ),
        timing(
            "push",
            f"{SUBSCRIBERS:,} subscribers, one topic each (raw websockets)",
            many,
            note=f"{len(many)}/{MESSAGES} delivered",
        ),
    ]
