"""The listener's two kinds of database access: a pool for the named queries (each
retried through a lost connection, within a deadline) and one dedicated LISTEN
connection that reconnects on its own."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("listener.database")

QUERY_FILE = Path(__file__).with_name("queries.sql")
CHANNELS = ("utter_jobs", "utter_cancel")


def load_queries(path: Path = QUERY_FILE) -> dict[str, str]:
    queries: dict[str, str] = {}
    for block in re.split(r"^-- name: ", path.read_text(), flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        queries[name.strip()] = body.strip()
    return queries


QUERIES = load_queries()


def jsonb(value: object) -> Jsonb:
    return Jsonb(value)


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int,
        retry_seconds: float,
        queries: Mapping[str, str] = QUERIES,
    ) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.queries = queries
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True},
            # No check on every checkout (that is a round trip per query): a broken
            # connection fails its query, fetch() has the pool check the idle ones and
            # retries.
            reconnect_timeout=retry_seconds,
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    async def fetch(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Runs a named query; a lost connection is retried with backoff until
        `retry_seconds` pass. The worker functions are safe to repeat."""
        sql = self.queries[name]
        deadline = asyncio.get_running_loop().time() + self.retry_seconds
        delay = 0.1
        while True:
            try:
                async with (
                    self.pool.connection() as conn,
                    conn.cursor(row_factory=dict_row) as cursor,
                ):
                    await cursor.execute(sql.encode(), params)
                    return await cursor.fetchall() if cursor.description else []
            except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as exc:
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning("database call %s failed (%s); retrying in %.1fs", name, exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                await self.pool.check()  # drop every idle connection the outage broke
                delay = min(delay * 2, 5.0)

    async def value(self, name: str, **params: Any) -> Any:
        rows = await self.fetch(name, **params)
        return next(iter(rows[0].values())) if rows else None


async def notifications(
    url: str, on_reconnect: Callable[[], Awaitable[None]]
) -> AsyncIterator[psycopg.Notify]:
    """Yields NOTIFYs on the listener's channels forever, reconnecting with backoff.
    After every (re)connect `on_reconnect` runs, since notifications sent while
    disconnected are gone."""
    delay = 0.2
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                for channel in CHANNELS:
                    await conn.execute(f"listen {channel}".encode())
                delay = 0.2
                await on_reconnect()
                async for notify in conn.notifies():
                    yield notify
        except psycopg.OperationalError as exc:
            log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
