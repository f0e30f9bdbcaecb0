"""One websocket client: the Phoenix channels it joins, their tokens and expiry, and
the bounded queue of frames on their way to it.

Frames from the client are handled one at a time, in order; frames to it all pass
through one queue, so a join's reply always precedes the broadcasts it enables."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from relay import frames
from relay.authorization import DatabaseUnavailable, ReadAuthorizer
from relay.frames import Frame, FrameError
from relay.hub import TopicHub
from relay.logs import log_event
from relay.tokens import OPAQUE_API_KEY_PREFIX, Identity, TokenRefused, expired_message, verify

# Close code for a client dropped for not reading: 1008 (policy violation), so that a
# browser's supabase-js reconnects and joins again.
SLOW_CLIENT_CLOSE_CODE = 1008
DATABASE_UNAVAILABLE = "Realtime was unable to connect to the project database"
UNSUPPORTED_EVENT = (
    "UnsupportedEvent: this development relay only relays broadcasts from the database "
    "(no client broadcast, presence or postgres_changes)"
)


def _flexible_bool(value: object) -> bool:
    """Supabase accepts `true` and the strings "true"/"t"/"1" alike."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "t", "1", "yes", "y", "on"}
    return value is True


def _no_permission(topic: str) -> str:
    return f"You do not have permissions to read from this Channel topic: {topic}"


@dataclass
class JoinedChannel:
    topic: str  # on the wire: `realtime:<name>`
    name: str  # in the database: `realtime.topic()`
    join_ref: str | None
    identity: Identity
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)


class ClientSession:
    def __init__(
        self,
        websocket: ServerConnection,
        *,
        vsn: str,
        connect_identity: Identity,
        hub: TopicHub,
        authorizer: ReadAuthorizer,
        jwt_secret: str,
        max_queued_frames: int,
        client_id: str,
    ):
        self._ws = websocket
        self._vsn = vsn
        self._connect_identity = connect_identity
        self._hub = hub
        self._authorizer = authorizer
        self._jwt_secret = jwt_secret
        self._outbox: asyncio.Queue[str] = asyncio.Queue(max_queued_frames)
        self._channels: dict[str, JoinedChannel] = {}
        self._dropped = False
        self._closer: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.client_id = client_id

    @property
    def vsn(self) -> str:
        return self._vsn

    async def run(self) -> None:
        self._writer = asyncio.create_task(self._write_loop())
        try:
            async for raw in self._ws:
                if self._dropped:
                    break
                await self._receive(raw)
        except ConnectionClosed:
            pass
        finally:
            for channel in list(self._channels.values()):
                self._forget(channel)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            if self._closer is not None:
                await self._closer

    # -- to the client -------------------------------------------------------------

    def enqueue(self, text: str) -> None:
        if self._dropped:
            return
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            self._drop(f"send queue overflow ({self._outbox.maxsize} frames waiting)")

    def _send(self, frame: Frame) -> None:
        self.enqueue(frames.encode(self._vsn, frame))

    async def _write_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._ws.send(await self._outbox.get())

    def _drop(self, why: str) -> None:
        """Disconnect a client that stopped reading, without waiting for it."""
        self._dropped = True
        for channel in list(self._channels.values()):
            self._forget(channel)
        if self._writer is not None:
            self._writer.cancel()
        log_event("client_dropped", client=self.client_id, why=why)
        self._closer = asyncio.create_task(
            self._ws.close(SLOW_CLIENT_CLOSE_CODE, "relay: client too slow, send queue overflowed")
        )

    # -- from the client -----------------------------------------------------------

    async def _receive(self, raw: str | bytes) -> None:
        try:
            if isinstance(raw, str):
                frame = frames.decode_text(self._vsn, raw)
            else:
                frame = frames.decode_binary(self._vsn, raw)
        except FrameError as exc:
            log_event("frame_ignored", client=self.client_id, why=str(exc))
            return
        if frame.topic == frames.PHOENIX_TOPIC:
            if frame.event == "heartbeat":
                self._send(frames.reply(frame, "ok", {}))
            else:
                self._send(frames.refusal(frame, "unmatched topic"))
            return
        if frame.event == "phx_join":
            await self._join(frame)
            return
        channel = self._channels.get(frame.topic)
        if channel is None:
            self._send(frames.refusal(frame, "unmatched topic"))
        elif frame.event == "phx_leave":
            self._send(frames.reply(frame, "ok", {}))
            self._close(channel)
            log_event("left", client=self.client_id, topic=channel.name)
        elif frame.event == "access_token":
            await self._refresh_token(channel, frame.payload)
        elif frame.ref is not None:
            log_event("event_refused", client=self.client_id, topic=channel.name, event=frame.event)
            self._send(frames.refusal(frame, UNSUPPORTED_EVENT))

    async def _join(self, frame: Frame) -> None:
        if not frame.topic.startswith(frames.TOPIC_PREFIX):
            self._send(frames.refusal(frame, "unmatched topic"))
            return
        previous = self._channels.get(frame.topic)
        if previous is not None:
            # Phoenix closes the channel a client joins again before joining it anew.
            self._close(previous)
        name = frame.topic.removeprefix(frames.TOPIC_PREFIX)
        payload: dict[str, Any] = frame.payload if isinstance(frame.payload, dict) else {}
        config = payload.get("config")
        config = config if isinstance(config, dict) else {}
        if not name:
            self._refuse(frame, "TopicNameRequired: You must provide a topic name")
            return
        if not _flexible_bool(config.get("private")):
            self._refuse(frame, "PrivateOnly: This project only allows private channels")
            return
        try:
            identity = self._identity_for(payload)
        except TokenRefused as exc:
            self._refuse(frame, exc.reason)
            return
        try:
            allowed = await self._authorizer.may_read(name, identity)
        except DatabaseUnavailable as exc:
            log_event("authorization_failed", topic=name, error=str(exc))
            self._refuse(frame, f"UnableToConnectToProject: {DATABASE_UNAVAILABLE}", identity)
            return
        if not allowed:
            self._refuse(frame, f"Unauthorized: {_no_permission(name)}", identity)
            return
        if self._dropped:
            return
        channel = JoinedChannel(frame.topic, name, frame.join_ref, identity)
        self._channels[frame.topic] = channel
        self._send(frames.reply(frame, "ok", {"postgres_changes": []}))
        self._hub.subscribe(name, self)
        self._schedule_expiry(channel)
        log_event(
            "joined",
            client=self.client_id,
            topic=name,
            role=identity.role,
            sub=identity.subject,
            exp=identity.exp,
        )

    def _identity_for(self, join_payload: dict[str, Any]) -> Identity:
        token = join_payload.get("access_token") or join_payload.get("user_token")
        if not isinstance(token, str) or token.startswith(OPAQUE_API_KEY_PREFIX):
            token = self._connect_identity.token
        # Verified again: the connection's own key may have expired since it connected.
        return verify(token, self._jwt_secret)

    def _refuse(self, frame: Frame, reason: str, identity: Identity | None = None) -> None:
        log_event(
            "join_refused",
            client=self.client_id,
            topic=frame.topic.removeprefix(frames.TOPIC_PREFIX),
            sub=identity.subject if identity else None,
            reason=reason,
        )
        self._send(frames.refusal(frame, reason))

    async def _refresh_token(self, channel: JoinedChannel, payload: object) -> None:
        """Supabase's `access_token` handling: a new token must still verify and still
        be allowed to read the topic, or the channel is shut down."""
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if (
            not isinstance(token, str)
            or token.startswith(OPAQUE_API_KEY_PREFIX)
            or token == channel.identity.token
        ):
            return
        try:
            identity = verify(token, self._jwt_secret)
        except TokenRefused as exc:
            self._shut_down(channel, exc.message)
            return
        try:
            allowed = await self._authorizer.may_read(channel.name, identity)
        except DatabaseUnavailable:
            allowed = None
        if self._channels.get(channel.topic) is not channel:
            return
        if allowed is None:
            self._shut_down(channel, DATABASE_UNAVAILABLE)
        elif not allowed:
            self._shut_down(channel, _no_permission(channel.name))
        else:
            channel.identity = identity
            self._schedule_expiry(channel)
            log_event(
                "token_refreshed", client=self.client_id, topic=channel.name, exp=identity.exp
            )

    # -- channel lifetime ----------------------------------------------------------

    def _schedule_expiry(self, channel: JoinedChannel) -> None:
        if channel.expiry is not None:
            channel.expiry.cancel()
            channel.expiry = None
        exp = channel.identity.exp
        if exp is not None:
            delay = max(0.0, exp - time.time())
            channel.expiry = asyncio.get_running_loop().call_later(delay, self._expire, channel)

    def _expire(self, channel: JoinedChannel) -> None:
        if self._channels.get(channel.topic) is not channel or channel.identity.exp is None:
            return
        now = time.time()
        if channel.identity.exp > int(now):
            # The event loop's clock ran ahead of the wall clock; try again just after.
            channel.expiry = asyncio.get_running_loop().call_later(
                channel.identity.exp - now + 0.05, self._expire, channel
            )
            return
        self._shut_down(channel, expired_message(channel.identity.exp, now))

    def _shut_down(self, channel: JoinedChannel, message: str) -> None:
        """Supabase's shutdown of a joined channel: a `system` error, then `phx_close`."""
        log_event("channel_shut_down", client=self.client_id, topic=channel.name, why=message)
        self._send(frames.system_error(channel.topic, channel.join_ref, message))
        self._close(channel)

    def _close(self, channel: JoinedChannel) -> None:
        self._forget(channel)
        self._send(frames.channel_closed(channel.topic, channel.join_ref))

    def _forget(self, channel: JoinedChannel) -> None:
        if channel.expiry is not None:
            channel.expiry.cancel()
            channel.expiry = None
        if self._channels.get(channel.topic) is channel:
            del self._channels[channel.topic]
            self._hub.unsubscribe(channel.name, self)
