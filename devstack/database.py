"""Connecting, with errors that say what was tried."""

from __future__ import annotations

import psycopg

from devstack.settings import redact


class DatabaseUnreachable(RuntimeError):
    pass


def connect(
    url: str, *, autocommit: bool = True, source: str = ""
) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        origin = f" (from {source})" if source else ""
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnreachable(f"cannot connect to {redact(url)}{origin}: {reason}") from None


def is_supabase(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """A Supabase database has the platform's own admin role; ours never does."""
    row = conn.execute(
        "select exists (select 1 from pg_roles where rolname = 'supabase_admin')"
    ).fetchone()
    return bool(row and row[0])
