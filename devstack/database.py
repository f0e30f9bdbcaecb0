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


# The Storage API records its own schema migrations in `storage.migrations`; only a
# database whose `storage` schema it built has that table. (Roles such as
# `supabase_admin` tell nothing: the local cluster mirrors them.) A catalog query,
# readable by every role, unlike a lookup in a schema the caller may not use.
SUPABASE_STORAGE_PROBE = """
select exists (
  select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where n.nspname = 'storage' and c.relname = 'migrations'
)
"""


def is_supabase(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """A database whose platform schemas Supabase itself built."""
    row = conn.execute(SUPABASE_STORAGE_PROBE).fetchone()
    return bool(row and row[0])
