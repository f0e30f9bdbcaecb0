"""Throwaway databases for tests, cloned from a template that holds the shim, every
migration (applied by the Supabase CLI) and the pgTAP helpers. The template is rebuilt
only when one of those inputs changes; cloning it takes a fraction of a second."""

from __future__ import annotations

import hashlib
import secrets

import psycopg

from devstack import migrations, platform
from devstack.database import connect
from devstack.settings import ROOT, with_dbname

TEMPLATE = "utter_template"
# pgTAP helper files kept in every test database, in the order they must run.
HELPERS = [
    ROOT / "supabase" / "tests" / "00000-test-helpers.test.sql",
    ROOT / "supabase" / "tests" / "00010-utter-helpers.test.sql",
]


def template_fingerprint() -> str:
    digest = hashlib.sha256()
    digest.update(platform.fingerprint().encode())
    digest.update(migrations.fingerprint().encode())
    for helpers in HELPERS:
        digest.update(helpers.read_bytes())
    return digest.hexdigest()[:32]


def _current_fingerprint(admin: psycopg.Connection[tuple[object, ...]]) -> str | None:
    row = admin.execute(
        "select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
        (TEMPLATE,),
    ).fetchone()
    return str(row[0]) if row and row[0] else None


def _drop(admin: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    admin.execute(f'drop database if exists "{name}" with (force)'.encode())


def ensure_template(server_url: str) -> str:
    wanted = template_fingerprint()
    with connect(server_url) as admin:
        if _current_fingerprint(admin) == wanted:
            return "template up to date"
        _drop(admin, TEMPLATE)
        admin.execute(f'create database "{TEMPLATE}"'.encode())
    url = with_dbname(server_url, TEMPLATE)
    platform.apply(url)
    migrations.push(url)
    platform.ensure_local_worker_login(url)
    for helpers in HELPERS:
        # One session each, as pg_prove runs them: pgTAP plans once per session.
        with connect(url) as conn:
            conn.execute(helpers.read_bytes())
    with connect(server_url) as admin:
        admin.execute(f"comment on database \"{TEMPLATE}\" is '{wanted}'".encode())
    return "template rebuilt"


def create(server_url: str, prefix: str = "utter_test") -> str:
    """Create a fresh database from the template and return its URL."""
    ensure_template(server_url)
    name = f"{prefix}_{secrets.token_hex(4)}"
    with connect(server_url) as admin:
        admin.execute(f'create database "{name}" template "{TEMPLATE}"'.encode())
    url = with_dbname(server_url, name)
    platform.maintain_realtime_partitions(url)
    return url


def drop(server_url: str, database_url: str) -> None:
    name = database_url.rsplit("/", 1)[-1].split("?", 1)[0]
    if not name.startswith("utter_"):
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    with connect(server_url) as admin:
        _drop(admin, name)
