"""What the listener checks before it starts, so that a wrong deployment stops with a
message instead of half-working: the storage layer must be the one the database's
platform has, and the database connection must keep a session of its own (LISTEN and
server-side prepared statements live in the session)."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg

from devstack.database import SUPABASE_STORAGE_PROBE
from devstack.settings import redact
from listener.settings import ConfigurationError, ListenerSettings

# Supavisor's transaction pooler listens on 6543; its session pooler and the direct
# connection on 5432.
TRANSACTION_POOLER_PORT = 6543

SESSION_POOLER_ADVICE = (
    "use a connection that keeps a session: on hosted Supabase the session pooler "
    "(<region>.pooler.supabase.com, port 5432, user utter_worker.<project ref>) or the "
    "direct connection (db.<project ref>.supabase.co:5432, IPv6 unless the IPv4 add-on "
    "is enabled); see docs/platform.md"
)


def refuse_transaction_pooler_url(url: str) -> None:
    if urlsplit(url).port == TRANSACTION_POOLER_PORT:
        raise ConfigurationError(
            f"UTTER_LISTENER_DATABASE_URL ({redact(url)}) is on port 6543, Supabase's "
            "transaction pooler, which supports neither LISTEN nor prepared statements; "
            + SESSION_POOLER_ADVICE
        )


async def _backend_pid(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    cursor = await conn.execute("select pg_backend_pid()")
    row = await cursor.fetchone()
    assert row is not None
    return int(str(row[0]))


async def refuse_transaction_pooling(url: str) -> None:
    """A pooler in transaction mode hands each transaction to whichever server
    connection is free. While a second client holds the server connection our first
    statement ran on, a session keeps it and a transaction pooler cannot: our next
    statement runs on another backend."""
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10) as ours,
        await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10) as other,
    ):
        first = await _backend_pid(ours)
        async with other.transaction():
            await _backend_pid(other)
            second = await _backend_pid(ours)
    if first != second:
        raise ConfigurationError(
            f"UTTER_LISTENER_DATABASE_URL ({redact(url)}) goes through a pooler in "
            "transaction mode (consecutive statements ran on different server sessions), "
            "which loses LISTEN and prepared statements; " + SESSION_POOLER_ADVICE
        )


async def refuse_local_storage_on_supabase(settings: ListenerSettings) -> None:
    if settings.storage != "local":
        return
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True, connect_timeout=10
    ) as conn:
        cursor = await conn.execute(SUPABASE_STORAGE_PROBE.encode())
        row = await cursor.fetchone()
    if row and row[0]:
        raise ConfigurationError(
            "UTTER_STORAGE=local cannot be used with a Supabase database: its Storage API "
            "owns storage.objects (and refuses direct deletes), and local files would not "
            "be where clients download them. Set UTTER_STORAGE=supabase with "
            "UTTER_SUPABASE_URL (https://<project ref>.supabase.co) and "
            "UTTER_SUPABASE_SERVICE_ROLE_KEY."
        )


def refuse_local_storage_for_a_remote_engine(engine_name: str, settings: ListenerSettings) -> None:
    """The Modal engine's containers fetch a voice's reference from the URL the
    listener signs; the local stand-in's URLs are files on this machine."""
    if engine_name == "modal" and settings.storage == "local":
        raise ConfigurationError(
            "the Modal engine cannot use UTTER_STORAGE=local: its GPU containers read each "
            "voice's reference through a signed Storage URL, and local storage has only "
            "files on this machine. Set UTTER_STORAGE=supabase with UTTER_SUPABASE_URL "
            "and UTTER_SUPABASE_SERVICE_ROLE_KEY, or use an in-process engine "
            "(UTTER_ENGINE=qwen-local, espeak)."
        )


async def check(settings: ListenerSettings) -> None:
    """Raises ConfigurationError naming what to set."""
    refuse_transaction_pooler_url(settings.database_url)
    await refuse_transaction_pooling(settings.database_url)
    await refuse_local_storage_on_supabase(settings)
