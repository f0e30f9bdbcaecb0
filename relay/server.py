"""The relay process: the websocket endpoint supabase-js expects at
`/realtime/v1/websocket`, a `/healthz` page, the database feed and the fan-out hub.

`serve()` runs it in-process (tests start it on port 0); `python -m relay` runs it
until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import weakref
from collections.abc import AsyncIterator
from datetime import timedelta
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as websockets_serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from relay import frames
from relay.authorization import ReadAuthorizer
from relay.feed import MessageFeed
from relay.hub import TopicHub
from relay.logs import log_event
from relay.session import ClientSession
from relay.settings import RelaySettings
from relay.tokens import Identity, TokenRefused, verify

WEBSOCKET_PATH = "/realtime/v1/websocket"
HEALTH_PATH = "/healthz"


def _json_response(status: HTTPStatus, body: dict[str, object]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)


class RelayServer:
    def __init__(self, settings: RelaySettings):
        self.settings = settings
        self.hub = TopicHub()
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]] = (
            AsyncConnectionPool(
                settings.database_url,
                min_size=1,
                max_size=settings.authorization_pool_size,
                open=False,
                timeout=5,
                # A pooled connection the server dropped is replaced, not handed to a join.
                check=AsyncConnectionPool.check_connection,
                name="relay-authorization",
            )
        )
        self.feed = MessageFeed(
            settings.database_url,
            self._pool,
            self.hub.publish,
            catch_up_window=timedelta(seconds=settings.catch_up_window_s),
        )
        self._authorizer = ReadAuthorizer(self._pool)
        self._server: Server | None = None
        self._feed_task: asyncio.Task[None] | None = None
        # What each handshake verified, for the connection handler that follows it.
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, tuple[str, Identity]] = (
            weakref.WeakKeyDictionary()
        )
        self._client_ids = itertools.count(1)
        self.clients = 0

    @property
    def port(self) -> int:
        assert self._server is not None, "the relay is not started"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def http_url(self) -> str:
        """What a supabase-js client is created with (`createClient(http_url, key)`)."""
        return f"http://{self.settings.host}:{self.port}"

    async def start(self, *, wait_for_database_s: float = 10.0) -> None:
        # The pool opens lazily so that a relay started before its database still
        # serves /healthz and retries; joins are refused until the database is there.
        await self._pool.open(wait=False)
        self._feed_task = asyncio.create_task(self.feed.run(), name="relay-feed")
        try:
            await asyncio.wait_for(self.feed.listening.wait(), wait_for_database_s)
        except TimeoutError:
            log_event("database_not_ready", waited_s=wait_for_database_s)
        self._server = await websockets_serve(
            self._handle,
            self.settings.host,
            self.settings.port,
            process_request=self._check_handshake,
            compression=None,
            max_size=1 << 20,
            close_timeout=2,
        )
        log_event("relay_started", host=self.settings.host, port=self.port, path=WEBSOCKET_PATH)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed_task
            self._feed_task = None
        await self._pool.close()
        log_event("relay_stopped")

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == HEALTH_PATH:
            listening = self.feed.listening.is_set()
            status = HTTPStatus.OK if listening else HTTPStatus.SERVICE_UNAVAILABLE
            return _json_response(
                status,
                {
                    "status": "ok" if listening else "database unavailable",
                    "relay": "development stand-in for Supabase Realtime",
                    "clients": self.clients,
                    "subscriptions": self.hub.subscriber_count(),
                    "database_reconnects": self.feed.reconnects,
                },
            )
        if url.path != WEBSOCKET_PATH:
            return _json_response(HTTPStatus.NOT_FOUND, {"error": "Not found"})
        query = parse_qs(url.query)
        vsn = query.get("vsn", [frames.VSN_1])[0]
        if vsn not in frames.SUPPORTED_VSNS:
            return _json_response(
                HTTPStatus.BAD_REQUEST,
                {"error": f"Unsupported protocol version {vsn!r}; use 1.0.0 or 2.0.0"},
            )
        api_key = request.headers.get("x-api-key") or query.get("apikey", [None])[0]
        if not api_key:
            log_event("connect_refused", why="API key is missing")
            return _json_response(HTTPStatus.UNAUTHORIZED, {"error": "API key is missing"})
        try:
            identity = verify(api_key, self.settings.jwt_secret)
        except TokenRefused as exc:
            log_event("connect_refused", why=exc.reason)
            return _json_response(HTTPStatus.UNAUTHORIZED, {"error": exc.message})
        self._admitted[connection] = (vsn, identity)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        vsn, identity = self._admitted.pop(connection)
        client_id = f"c{next(self._client_ids)}"
        session = ClientSession(
            connection,
            vsn=vsn,
            connect_identity=identity,
            hub=self.hub,
            authorizer=self._authorizer,
            jwt_secret=self.settings.jwt_secret,
            max_queued_frames=self.settings.max_queued_frames,
            client_id=client_id,
        )
        self.clients += 1
        log_event(
            "connected",
            client=client_id,
            peer=connection.remote_address[0] if connection.remote_address else None,
            vsn=vsn,
            role=identity.role,
        )
        try:
            await session.run()
        finally:
            self.clients -= 1
            log_event("disconnected", client=client_id, close_code=connection.close_code)


@contextlib.asynccontextmanager
async def serve(settings: RelaySettings, **start_options: float) -> AsyncIterator[RelayServer]:
    relay = RelayServer(settings)
    await relay.start(**start_options)
    try:
        yield relay
    finally:
        await relay.stop()
