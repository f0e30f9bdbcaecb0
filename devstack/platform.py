"""Apply the platform shim (`sql/platform/*.sql`) and pgmq to a database that is not
Supabase. Idempotent: safe to run on every start.

The shim is installed as the platform's superuser (`supabase_admin`), which then owns
it as Supabase's admin roles own theirs; pgmq is installed as `postgres`, which on
Supabase creates its extensions itself."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pgmq

from devstack.database import connect, is_supabase
from devstack.settings import ROOT, admin_url

SHIM_DIR = ROOT / "sql" / "platform"
CLUSTER_ROLES = SHIM_DIR / "cluster" / "roles.sql"
# Realtime's janitor work, also run on its own when a test database is cloned.
REALTIME_PARTITIONS = SHIM_DIR / "31_realtime_partitions.sql"


def shim_files() -> list[str]:
    return sorted(str(p) for p in SHIM_DIR.glob("*.sql"))


def fingerprint() -> str:
    digest = hashlib.sha256(pgmq.get_embedded_sql_version().encode())
    for path in [*shim_files(), str(CLUSTER_ROLES)]:
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def apply(database_url: str) -> str:
    with connect(database_url) as conn:
        if is_supabase(conn):
            return "Supabase database: platform shim not needed"
    with connect(admin_url(database_url)) as admin:
        for path in shim_files():
            admin.execute(Path(path).read_bytes())
        installed = admin.execute(
            "select exists (select 1 from pg_namespace where nspname = 'pgmq')"
        ).fetchone()
        if not (installed and installed[0]):
            admin.execute("set role postgres")
            admin.execute(pgmq.get_embedded_install_sql().encode())
            admin.execute("reset role")
    return f"platform shim applied (pgmq {pgmq.get_embedded_sql_version()} SQL)"


def maintain_realtime_partitions(database_url: str) -> None:
    """What Supabase Realtime does for each tenant: today's partitions exist, expired
    ones are gone. A database cloned from an older template needs it before use."""
    with connect(database_url) as conn:
        if is_supabase(conn):
            return
    with connect(admin_url(database_url)) as admin:
        admin.execute(REALTIME_PARTITIONS.read_bytes())


def drop_privileged_extensions(database_url: str) -> None:
    """Before the CLI's remote `db reset`, which drops extensions as `postgres`: on
    Supabase supautils lets it drop the privileged ones; here the platform's superuser
    does it for it. `apply` installs them again."""
    with connect(admin_url(database_url)) as admin:
        admin.execute("drop extension if exists plpgsql_check")
        admin.execute("drop extension if exists pg_cron")


LOCAL_WORKER_PASSWORD = "utter_worker"
LOCAL_BILLING_PASSWORD = "utter_billing"


def ensure_local_worker_login(database_url: str) -> None:
    """The migrations create the listener's and the webhook receiver's roles without a
    password (on Supabase the operator sets them). A local cluster gets well-known
    development passwords."""
    with connect(database_url) as conn:
        if is_supabase(conn):
            return
        conn.execute(f"alter role utter_worker password '{LOCAL_WORKER_PASSWORD}'".encode())
        conn.execute(f"alter role utter_billing password '{LOCAL_BILLING_PASSWORD}'".encode())
