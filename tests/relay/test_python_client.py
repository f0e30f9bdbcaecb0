"""The official Python client (PyPI `realtime`, vsn 1.0.0) against the relay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from realtime.types import BroadcastPayload

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

SUBSCRIBED = RealtimeSubscribeStates.SUBSCRIBED
CHANNEL_ERROR = RealtimeSubscribeStates.CHANNEL_ERROR
CLOSED = RealtimeSubscribeStates.CLOSED


class Watcher:
    """One channel of the official client and everything it reports."""

    def __init__(self) -> None:
        self.messages: list[BroadcastPayload] = []
        self.states: list[tuple[RealtimeSubscribeStates, str]] = []
        self._changed = asyncio.Event()

    def on_message(self, message: BroadcastPayload) -> None:
        self.messages.append(message)
        self._changed.set()

    def on_state(self, state: RealtimeSubscribeStates, error: Exception | None) -> None:
        self.states.append((state, str(error) if error else ""))
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_S):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def saw(self, state: RealtimeSubscribeStates, text: str = "") -> bool:
        return any(s == state and text in error for s, error in self.states)


async def subscribe(
    relay: RelayServer, topic: str, token: str
) -> tuple[AsyncRealtimeClient, Watcher]:
    """Connects with the anon key and joins `topic` as the holder of `token`, the way
    supabase-js and supabase-py do for a signed-in user."""
    client = AsyncRealtimeClient(
        f"{relay.http_url}/realtime/v1", anon_key(), auto_reconnect=False, max_retries=1
    )
    await client.set_auth(token)
    watcher = Watcher()
    channel = client.channel(
        topic,
        {
            "config": {
                "private": True,
                "broadcast": {"ack": False, "self": False},
                "presence": {"key": "", "enabled": False},
            }
        },
    )
    channel.on_broadcast("*", watcher.on_message)
    await channel.subscribe(watcher.on_state)
    return client, watcher


async def test_receives_its_messages_in_order(relay: RelayServer, relay_database_url: str) -> None:
    user = new_user()
    client, watcher = await subscribe(relay, user.topic, user.token())
    try:
        assert watcher.states == [(SUBSCRIBED, "")]
        sent = [("UPDATE", {"task": "t1", "progress": step}) for step in range(10)]
        await send_messages(relay_database_url, user.topic, sent)
        await watcher.wait_for(lambda: len(watcher.messages) >= len(sent))
        assert [(m["event"], without_id(m["payload"])) for m in watcher.messages] == sent
        assert all(m.get("meta", {}).get("id") for m in watcher.messages)
    finally:
        await client.close()


@pytest.mark.parametrize(("case", "expected_reason"), REFUSALS)
async def test_refused(relay: RelayServer, case: str, expected_reason: str) -> None:
    topic, token = refused_join(case)
    client, watcher = await subscribe(relay, topic, token)
    try:
        assert watcher.states[0][0] == CHANNEL_ERROR
        assert expected_reason in watcher.states[0][1]
        assert relay.hub.subscriber_count(topic.removeprefix("realtime:")) == 0
    finally:
        await client.close()


async def test_token_expiry_closes_the_channel(relay: RelayServer, relay_database_url: str) -> None:
    user = new_user()
    client, watcher = await subscribe(relay, user.topic, user.token(expires_in=2))
    try:
        assert watcher.saw(SUBSCRIBED)
        await watcher.wait_for(lambda: watcher.saw(CLOSED))
        assert watcher.saw(CHANNEL_ERROR, "Token has expired")
        assert relay.hub.subscriber_count(user.topic) == 0
        await send_messages(relay_database_url, user.topic, [("UPDATE", {"after": "expiry"})])
        await asyncio.sleep(0.3)
        assert watcher.messages == []
    finally:
        await client.close()


async def test_token_refresh_keeps_the_channel(relay: RelayServer, relay_database_url: str) -> None:
    user = new_user()
    client, watcher = await subscribe(relay, user.topic, user.token(expires_in=2))
    try:
        await client.set_auth(user.token(expires_in=3600))
        await asyncio.sleep(2.5)
        await send_messages(relay_database_url, user.topic, [("UPDATE", {"still": "joined"})])
        await watcher.wait_for(lambda: len(watcher.messages) == 1)
        assert watcher.states == [(SUBSCRIBED, "")]
    finally:
        await client.close()


async def test_token_refresh_to_another_user_closes_the_channel(relay: RelayServer) -> None:
    user, other = new_user(), new_user()
    client, watcher = await subscribe(relay, user.topic, user.token())
    try:
        await client.set_auth(other.token())
        await watcher.wait_for(lambda: watcher.saw(CLOSED))
        assert watcher.saw(CHANNEL_ERROR, "You do not have permissions to read")
        assert relay.hub.subscriber_count(user.topic) == 0
    finally:
        await client.close()
