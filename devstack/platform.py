"""Apply the platform shim (`sql/platform/*.sql`) and pgmq to a database that is not
Supabase. Idempotent: safe to run on every start."""

from __future__ import annotations

import hashlib

import pgmq
import psycopg

from devstack.database import is_supabase
from devstack.settings import ROOT

SHIM_DIR = ROOT / "sql" / "platform"


def shim_files() -> list[str]:
    return sorted(str(p) for p in SHIM_DIR.glob("*.sql"))


def fingerprint() -> str:
    digest = hashlib.sha256(pgmq.get_embedded_sql_version().encode())
    for path in shim_files():
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def apply(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    if is_supabase(conn):
        return "Supabase database: platform shim not needed"
    for path in shim_files():
        with open(path) as handle:
            conn.execute(handle.read().encode())
    installed = conn.execute(
        "select exists (select 1 from pg_namespace where nspname = 'pgmq')"
    ).fetchone()
    if not (installed and installed[0]):
        conn.execute(pgmq.get_embedded_install_sql().encode())
    return f"platform shim applied (pgmq {pgmq.get_embedded_sql_version()} SQL)"


LOCAL_WORKER_PASSWORD = "utter_worker"
LOCAL_BILLING_PASSWORD = "utter_billing"


def ensure_local_worker_login(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The migrations create the listener's and the webhook receiver's roles without a
    password (on Supabase the operator sets them). A local cluster gets well-known
    development passwords."""
    if is_supabase(conn):
        return
    conn.execute(f"alter role utter_worker password '{LOCAL_WORKER_PASSWORD}'".encode())
    conn.execute(f"alter role utter_billing password '{LOCAL_BILLING_PASSWORD}'".encode())
