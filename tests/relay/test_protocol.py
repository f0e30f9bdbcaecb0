"""The Phoenix channel protocol as the relay speaks it, frame by frame."""

from __future__ import annotations

import asyncio
import json
import struct
import urllib.error
import urllib.request
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from devstack.settings import worker_url
from relay.server import RelayServer
from tests.relay.support import WAIT_S, RawClient, anon_key, new_user, send_messages, without_id


def http_get(relay: RelayServer, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{relay.http_url}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_healthz(relay: RelayServer) -> None:
    status, body = await asyncio.to_thread(http_get, relay, "/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert "stand-in" in body["relay"]


async def test_unknown_path_is_not_found(relay: RelayServer) -> None:
    status, _ = await asyncio.to_thread(http_get, relay, "/realtime/v1/elsewhere")
    assert status == 404


@pytest.mark.parametrize(
    ("apikey", "error"),
    [
        (None, "API key is missing"),
        ("not-a-jwt", "The token provided is not a valid JWT"),
    ],
)
async def test_connect_needs_a_valid_api_key(
    relay: RelayServer, apikey: str | None, error: str
) -> None:
    query = "vsn=1.0.0" if apikey is None else f"vsn=1.0.0&apikey={apikey}"
    url = f"ws://{relay.settings.host}:{relay.port}/realtime/v1/websocket?{query}"
    with pytest.raises(InvalidStatus) as refused:
        await connect(url)
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"] == error


async def test_heartbeat_is_answered(relay: RelayServer) -> None:
    client = await RawClient.connect(relay)
    try:
        ref = await client.push("phoenix", "heartbeat", {})
        assert await client.receive() == {
            "topic": "phoenix",
            "event": "phx_reply",
            "payload": {"status": "ok", "response": {}},
            "ref": ref,
            "join_ref": None,
        }
    finally:
        await client.close()


async def test_vsn_2_frames_are_arrays(relay: RelayServer) -> None:
    url = f"ws://{relay.settings.host}:{relay.port}/realtime/v1/websocket?apikey={anon_key()}&vsn=2.0.0"
    async with connect(url) as ws:
        await ws.send(json.dumps([None, "7", "phoenix", "heartbeat", {}]))
        reply = json.loads(await ws.recv())
        assert reply == [None, "7", "phoenix", "phx_reply", {"status": "ok", "response": {}}]


async def test_join_reply_and_broadcast_shape(relay: RelayServer, relay_database_url: str) -> None:
    user = new_user()
    client = await RawClient.connect(relay)
    try:
        join_ref, reply = await client.join(user.topic, user.token())
        assert reply == {
            "topic": f"realtime:{user.topic}",
            "event": "phx_reply",
            "payload": {"status": "ok", "response": {"postgres_changes": []}},
            "ref": join_ref,
            "join_ref": join_ref,
        }
        await send_messages(relay_database_url, user.topic, [("INSERT", {"id": 1})])
        message = await client.receive()
        assert message["event"] == "broadcast"
        assert message["topic"] == f"realtime:{user.topic}"
        assert message["ref"] is None
        assert message["join_ref"] is None
        payload = message["payload"]
        assert (payload["type"], payload["event"], payload["payload"]) == (
            "broadcast",
            "INSERT",
            {"id": 1},
        )
        assert payload["meta"]["id"]
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("topic", "private", "reason"),
    [
        ("", True, "TopicNameRequired: You must provide a topic name"),
        ("user:someone", False, "PrivateOnly: This project only allows private channels"),
    ],
)
async def test_join_refusals(relay: RelayServer, topic: str, private: bool, reason: str) -> None:
    client = await RawClient.connect(relay)
    try:
        _, reply = await client.join(topic, new_user().token(), private=private)
        assert reply["payload"] == {"status": "error", "response": {"reason": reason}}
    finally:
        await client.close()


async def test_join_falls_back_to_the_connection_key(relay: RelayServer) -> None:
    """Without an access token a join runs as the connection's API key (anon here),
    which the per-user policy does not let read."""
    user = new_user()
    client = await RawClient.connect(relay)
    try:
        _, reply = await client.join(user.topic, None)
        assert reply["payload"]["status"] == "error"
        assert reply["payload"]["response"]["reason"].startswith("Unauthorized:")
    finally:
        await client.close()


async def test_frames_for_unjoined_topics_are_refused(relay: RelayServer) -> None:
    client = await RawClient.connect(relay)
    try:
        ref = await client.push("realtime:user:nobody", "access_token", {"access_token": "x"})
        reply = await client.receive()
        assert reply["ref"] == ref
        assert reply["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}
        await client.push("elsewhere", "phx_join", {})
        reply = await client.receive()
        assert reply["payload"]["response"] == {"reason": "unmatched topic"}
    finally:
        await client.close()


async def test_client_broadcasts_are_refused(relay: RelayServer) -> None:
    user = new_user()
    client = await RawClient.connect(relay)
    try:
        join_ref, _ = await client.join(user.topic, user.token())
        ref = await client.push(
            f"realtime:{user.topic}",
            "broadcast",
            {"type": "broadcast", "event": "hello", "payload": {}},
            join_ref=join_ref,
        )
        reply = await client.receive()
        assert reply["ref"] == ref
        assert reply["payload"]["status"] == "error"
        assert reply["payload"]["response"]["reason"].startswith("UnsupportedEvent:")
    finally:
        await client.close()


async def test_binary_broadcast_push_is_refused(relay: RelayServer) -> None:
    """realtime-js (vsn 2.0.0) sends its own broadcasts as binary frames."""
    user = new_user()
    url = f"ws://{relay.settings.host}:{relay.port}/realtime/v1/websocket?apikey={anon_key()}&vsn=2.0.0"
    topic = f"realtime:{user.topic}"
    async with connect(url) as ws:
        await ws.send(
            json.dumps(
                [
                    "1",
                    "1",
                    topic,
                    "phx_join",
                    {"config": {"private": True}, "access_token": user.token()},
                ]
            )
        )
        assert json.loads(await ws.recv())[4]["status"] == "ok"
        fields = [b"1", b"2", topic.encode(), b"hello", b""]
        header = struct.pack("!7B", 3, *(len(f) for f in fields), 1)
        await ws.send(header + b"".join(fields) + b'{"a":1}')
        join_ref, ref, reply_topic, event, payload = json.loads(await ws.recv())
        assert (join_ref, ref, reply_topic, event) == ("1", "2", topic, "phx_reply")
        assert payload["status"] == "error"


async def test_leave_replies_then_closes(relay: RelayServer, relay_database_url: str) -> None:
    user = new_user()
    client = await RawClient.connect(relay)
    try:
        join_ref, _ = await client.join(user.topic, user.token())
        ref = await client.push(f"realtime:{user.topic}", "phx_leave", {}, join_ref=join_ref)
        reply = await client.receive()
        assert (reply["event"], reply["ref"], reply["payload"]["status"]) == (
            "phx_reply",
            ref,
            "ok",
        )
        closed = await client.receive()
        assert (closed["event"], closed["join_ref"]) == ("phx_close", join_ref)
        assert relay.hub.subscriber_count(user.topic) == 0
        await send_messages(relay_database_url, user.topic, [("INSERT", {"after": "leave"})])
        ref = await client.push("phoenix", "heartbeat", {})
        assert (await client.receive())["ref"] == ref  # and no broadcast before it
    finally:
        await client.close()


async def test_joining_again_closes_the_earlier_join(relay: RelayServer) -> None:
    user = new_user()
    client = await RawClient.connect(relay)
    try:
        first_ref, _ = await client.join(user.topic, user.token())
        second_ref = client.next_ref()
        await client.push(
            f"realtime:{user.topic}",
            "phx_join",
            {"config": {"private": True}, "access_token": user.token()},
            ref=second_ref,
            join_ref=second_ref,
        )
        closed = await client.receive()
        assert (closed["event"], closed["join_ref"]) == ("phx_close", first_ref)
        reply = await client.receive()
        assert (reply["ref"], reply["payload"]["status"]) == (second_ref, "ok")
        assert relay.hub.subscriber_count(user.topic) == 1
    finally:
        await client.close()


async def test_only_private_broadcasts_of_the_topic_arrive(
    relay: RelayServer, relay_database_url: str
) -> None:
    """Public messages and other topics' messages are not relayed; a message too big to
    ride in a NOTIFY is read from the table and arrives whole, in its place."""
    user, other = new_user(), new_user()
    client = await RawClient.connect(relay)
    try:
        await client.join(user.topic, user.token())
        big = {"text": "x" * 20_000}
        await send_messages(
            relay_database_url, user.topic, [("INSERT", {"public": True})], private=False
        )
        await send_messages(relay_database_url, other.topic, [("INSERT", {"other": True})])
        await send_messages(
            relay_database_url,
            user.topic,
            [("INSERT", {"n": 1}), ("UPDATE", big), ("DELETE", {"n": 3})],
        )
        received = [(await client.receive())["payload"] for _ in range(3)]
        assert [(p["event"], without_id(p["payload"])) for p in received] == [
            ("INSERT", {"n": 1}),
            ("UPDATE", big),
            ("DELETE", {"n": 3}),
        ]
    finally:
        await client.close()


async def test_rolled_back_messages_are_never_sent(
    relay: RelayServer, relay_database_url: str
) -> None:
    user = new_user()
    client = await RawClient.connect(relay)
    try:
        await client.join(user.topic, user.token())
        async with await psycopg.AsyncConnection.connect(relay_database_url) as conn:
            await conn.execute(
                "select realtime.send(%s, 'INSERT', %s, true)", (Jsonb({"n": 0}), user.topic)
            )
            await conn.rollback()
        await send_messages(relay_database_url, user.topic, [("INSERT", {"n": 1})])
        assert without_id((await client.receive())["payload"]["payload"]) == {"n": 1}
    finally:
        await client.close()


async def test_the_relays_notifications_name_a_message_and_reveal_nothing(
    relay_database_url: str,
) -> None:
    """Any login may LISTEN on any channel: the listener's own role hears the relay's
    channel, and learns only which message to read, not what it says."""
    user = new_user()
    async with await psycopg.AsyncConnection.connect(
        worker_url(relay_database_url), autocommit=True
    ) as eavesdropper:
        await eavesdropper.execute("listen realtime_relay")
        await send_messages(relay_database_url, user.topic, [("UPDATE", {"secret": "s3cr3t"})])
        notice = await anext(eavesdropper.notifies(timeout=WAIT_S))
    heard = json.loads(notice.payload)
    assert set(heard) == {"id", "inserted_at"}
    assert "s3cr3t" not in notice.payload and user.topic not in notice.payload
