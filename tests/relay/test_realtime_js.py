"""realtime-js (npm `@supabase/realtime-js`, what supabase-js uses in the browser) against
the relay, run by Node from tests/relay/js/subscriber.mjs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from relay.server import RelayServer
from tests.relay.support import (
    REFUSALS,
    WAIT_S,
    anon_key,
    new_user,
    refused_join,
    send_messages,
    without_id,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("js") / "subscriber.mjs"


Event = dict[str, Any]


class NodeSubscriber:
    def __init__(self, process: asyncio.subprocess.Process):
        self._process = process
        self.events: list[Event] = []

    async def next_event(self, wanted: Callable[[Event], bool]) -> Event:
        """The next reported event that `wanted` accepts (earlier ones are kept)."""
        assert self._process.stdout is not None
        async with asyncio.timeout(WAIT_S):
            while True:
                line = await self._process.stdout.readline()
                if not line:
                    raise AssertionError(f"the Node client exited; it reported {self.events}")
                event: Event = json.loads(line)
                self.events.append(event)
                if wanted(event):
                    return event

    async def status(self) -> Event:
        return await self.next_event(lambda e: e["kind"] == "status")

    async def command(self, **command: Any) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write((json.dumps(command) + "\n").encode())
        await self._process.stdin.drain()

    def broadcasts(self) -> list[tuple[str, Any]]:
        return [
            (e["message"]["event"], without_id(e["message"]["payload"]))
            for e in self.events
            if e["kind"] == "broadcast"
        ]


@asynccontextmanager
async def node_subscriber(
    relay: RelayServer, topic: str, token: str, vsn: str = "2.0.0"
) -> AsyncIterator[NodeSubscriber]:
    settings = {
        "url": relay.http_url,
        "apikey": anon_key(),
        "token": token,
        "topic": topic,
        "vsn": vsn,
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        "--experimental-websocket",
        "--no-warnings",
        str(SCRIPT),
        json.dumps(settings),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeSubscriber(process)
    finally:
        if process.returncode is None:
            try:
                assert process.stdin is not None
                process.stdin.write(b'{"op": "stop"}\n')
                await asyncio.wait_for(process.wait(), 5)
            except (TimeoutError, ConnectionError):
                process.kill()
                await process.wait()


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0"])
async def test_receives_its_messages_in_order(
    relay: RelayServer, relay_database_url: str, vsn: str
) -> None:
    user = new_user()
    async with node_subscriber(relay, user.topic, user.token(), vsn) as client:
        assert (await client.status())["status"] == "SUBSCRIBED"
        sent = [("UPDATE", {"task": "t1", "progress": step, "text": "é ✓"}) for step in range(10)]
        await send_messages(relay_database_url, user.topic, sent)
        for _ in sent:
            await client.next_event(lambda e: e["kind"] == "broadcast")
        assert client.broadcasts() == sent


@pytest.mark.parametrize(("case", "expected_reason"), REFUSALS)
async def test_refused(relay: RelayServer, case: str, expected_reason: str) -> None:
    topic, token = refused_join(case)
    async with node_subscriber(relay, topic, token) as client:
        status = await client.status()
        assert status["status"] == "CHANNEL_ERROR"
        assert expected_reason in status["error"]
        assert relay.hub.subscriber_count(topic) == 0


async def test_token_expiry_closes_the_channel(relay: RelayServer) -> None:
    user = new_user()
    async with node_subscriber(relay, user.topic, user.token(expires_in=2)) as client:
        assert (await client.status())["status"] == "SUBSCRIBED"
        system = await client.next_event(lambda e: e["kind"] == "system")
        assert system["message"]["status"] == "error"
        assert "Token has expired" in system["message"]["message"]
        assert system["message"]["channel"] == user.topic
        assert (await client.status())["status"] == "CLOSED"
        assert relay.hub.subscriber_count(user.topic) == 0


async def test_token_refresh(relay: RelayServer, relay_database_url: str) -> None:
    """A fresh token for the same user keeps the channel (past the old expiry); one for
    another user shuts it down."""
    user, other = new_user(), new_user()
    async with node_subscriber(relay, user.topic, user.token(expires_in=2)) as client:
        assert (await client.status())["status"] == "SUBSCRIBED"
        await client.command(op="setAuth", token=user.token(expires_in=3600))
        await client.next_event(lambda e: e["kind"] == "auth_set")
        await asyncio.sleep(2.5)
        await send_messages(relay_database_url, user.topic, [("UPDATE", {"still": "joined"})])
        await client.next_event(lambda e: e["kind"] == "broadcast")
        await client.command(op="setAuth", token=other.token())
        system = await client.next_event(lambda e: e["kind"] == "system")
        assert "You do not have permissions to read" in system["message"]["message"]
        assert (await client.status())["status"] == "CLOSED"
        assert relay.hub.subscriber_count(user.topic) == 0
