"""The relay keeps `realtime.messages` partitioned as Supabase Realtime does: days from
yesterday to three ahead exist, days older than 72 hours are dropped."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import psycopg

from devstack.settings import admin_url
from relay.__main__ import keep_message_partitions


def partitions(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
            "where i.inhparent = 'realtime.messages'::regclass"
        ).fetchall()
    return {str(row[0]) for row in rows}


def day(offset: int) -> str:
    return "messages_" + (datetime.now(UTC).date() + timedelta(days=offset)).strftime("%Y_%m_%d")


async def test_the_relay_creates_missing_days_and_drops_expired_ones(
    fresh_database_url: str,
) -> None:
    with psycopg.connect(admin_url(fresh_database_url), autocommit=True) as admin:
        admin.execute(f"drop table realtime.{day(3)}")
        admin.execute(
            f"create table realtime.{day(-5)} partition of realtime.messages "
            f"for values from ('{datetime.now(UTC).date() - timedelta(days=5)}') "
            f"to ('{datetime.now(UTC).date() - timedelta(days=4)}')"
        )
    upkeep = asyncio.create_task(keep_message_partitions(fresh_database_url))
    try:
        expected = {day(offset) for offset in range(-1, 4)}
        for _ in range(200):
            if partitions(fresh_database_url) == expected:
                break
            await asyncio.sleep(0.05)
        assert partitions(fresh_database_url) == expected
    finally:
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep
