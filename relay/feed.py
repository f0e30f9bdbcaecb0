"""The private broadcasts the database commits, in commit order, without polling.

A trigger (sql/platform/35_realtime_relay.sql) NOTIFYs `realtime_relay` for each
private broadcast inserted into `realtime.messages`; this feed LISTENs on a connection
of its own. NOTIFY is only delivered to a connected listener, so when that connection
drops, the feed reconnects with backoff, LISTENs again and then reads the rows it may
have missed from the table, skipping those it already delivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from relay.logs import LOGGER, log_event

NOTIFY_CHANNEL = "realtime_relay"
# Ids remembered to skip duplicates after a catch-up; far above what a development
# database writes within the catch-up window.
_MAX_REMEMBERED_IDS = 200_000

_COLUMNS = "id::text, topic, event, payload, inserted_at"
_BY_KEY = f"select {_COLUMNS} from realtime.messages where id = %s and inserted_at = %s"
_SINCE = f"""
select {_COLUMNS} from realtime.messages
where private is true and extension = 'broadcast' and inserted_at >= %s
order by inserted_at, id
"""


@dataclass(frozen=True, slots=True)
class RelayedMessage:
    id: str
    topic: str
    event: str
    payload: Any
    inserted_at: datetime


Pool = AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]]


def _from_row(row: tuple[Any, ...]) -> RelayedMessage | None:
    message_id, topic, event, payload, inserted_at = row
    # Supabase skips rows without an event or a payload the same way.
    if topic is None or event is None or payload is None:
        log_event("message_skipped", id=message_id, why="no topic, event or payload")
        return None
    return RelayedMessage(str(message_id), topic, event, payload, inserted_at)


class MessageFeed:
    def __init__(
        self,
        database_url: str,
        pool: Pool,
        deliver: Callable[[RelayedMessage], object],
        *,
        catch_up_window: timedelta = timedelta(seconds=60),
        max_backoff_s: float = 5.0,
    ):
        self._database_url = database_url
        self._pool = pool
        self._deliver = deliver
        self._catch_up_window = catch_up_window
        self._max_backoff_s = max_backoff_s
        # Newest `inserted_at` delivered, or when listening began: where catch-up starts.
        self._watermark: datetime | None = None
        self._delivered: OrderedDict[str, datetime] = OrderedDict()
        # Exactly one of these is set once the feed has started; no LISTEN, no delivery.
        self.listening = asyncio.Event()
        self.lost = asyncio.Event()
        self.listener_pid: int | None = None
        self.reconnects = 0
        self._failures = 0  # in a row, for the backoff

    async def run(self) -> None:
        while True:
            try:
                await self._listen_once()
            except (psycopg.OperationalError, PoolTimeout, OSError) as exc:
                cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                event, level = "database_connection_lost", logging.WARNING
            except Exception as exc:
                # Anything else (a query the schema no longer fits, a malformed notice) is
                # logged loudly but must not end delivery for good: reconnect and go on.
                LOGGER.exception("relay feed failed")
                cause = f"{type(exc).__name__}: {exc}"
                event, level = "feed_failed", logging.ERROR
            self.listening.clear()
            self.lost.set()
            self.listener_pid = None
            delay = min(self._max_backoff_s, 0.05 * 2**self._failures) * random.uniform(0.5, 1.0)
            self._failures = min(self._failures + 1, 16)
            log_event(event, level, error=cause, retry_in_s=round(delay, 3))
            await asyncio.sleep(delay)

    async def _listen_once(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._database_url,
            autocommit=True,
            row_factory=tuple_row,
            connect_timeout=5,
            # A silently vanished server is noticed within about half a minute.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        async with conn:
            await conn.execute(f"listen {NOTIFY_CHANNEL}")
            cursor = await conn.execute("select now()::timestamp, pg_backend_pid()")
            row = await cursor.fetchone()
            assert row is not None
            listening_since, pid = row
            if self._watermark is None:
                # A fresh relay starts with what is committed from now on, like Supabase.
                self._watermark = listening_since
            else:
                self.reconnects += 1
                # LISTEN is on before the catch-up reads, so nothing falls between them;
                # a message seen by both is delivered once.
                await self._catch_up()
            self.listener_pid = int(pid)
            self._failures = 0
            self.lost.clear()
            self.listening.set()
            log_event(
                "listening", channel=NOTIFY_CHANNEL, backend_pid=pid, reconnects=self.reconnects
            )
            async for notify in conn.notifies():
                await self._on_notify(notify.payload)
        raise psycopg.OperationalError("the LISTEN connection closed")

    async def _catch_up(self) -> None:
        assert self._watermark is not None
        since = self._watermark - self._catch_up_window
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_SINCE, (since,))
            rows = await cursor.fetchall()
        delivered = 0
        for row in rows:
            message = _from_row(row)
            if message is not None and self._publish(message):
                delivered += 1
        log_event("caught_up", since=since.isoformat(), rows=len(rows), delivered=delivered)

    async def _on_notify(self, text: str) -> None:
        # The notification names the row only (any login may LISTEN); the row is read
        # here, with the relay's own privileges.
        notice = json.loads(text)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _BY_KEY, (notice["id"], datetime.fromisoformat(notice["inserted_at"]))
            )
            row = await cursor.fetchone()
        if row is None:
            log_event("message_vanished", id=notice["id"])
            return
        message = _from_row(row)
        if message is not None:
            self._publish(message)

    def _publish(self, message: RelayedMessage) -> bool:
        if message.id in self._delivered:
            return False
        self._remember(message)
        self._deliver(message)
        return True

    def _remember(self, message: RelayedMessage) -> None:
        self._delivered[message.id] = message.inserted_at
        if self._watermark is None or message.inserted_at > self._watermark:
            self._watermark = message.inserted_at
        horizon = self._watermark - self._catch_up_window
        while self._delivered:
            oldest_id, oldest_at = next(iter(self._delivered.items()))
            if oldest_at >= horizon and len(self._delivered) <= _MAX_REMEMBERED_IDS:
                break
            del self._delivered[oldest_id]
