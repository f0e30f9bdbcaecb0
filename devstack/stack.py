"""Bringing the database side up: the server (unless DATABASE_URL names one), the
platform shim where Supabase is absent, and pending migrations through the CLI."""

from __future__ import annotations

from typing import Any

import psycopg

from devstack import cluster, migrations, platform
from devstack.database import connect
from devstack.settings import Target


def connect_to(t: Target) -> psycopg.Connection[Any]:
    return connect(t.url, source="DATABASE_URL" if t.from_env else "the project cluster")


def start_server(t: Target) -> str:
    if t.from_env:
        return f"using DATABASE_URL: {t.redacted}"
    message = cluster.start()
    cluster.wait_until_accepting()
    return message


def migrate(t: Target) -> list[str]:
    with connect_to(t):
        pass  # a clear error for an unreachable target before anything else runs
    shim = platform.apply(t.url)
    pushed = migrations.push(t.url)
    platform.ensure_local_worker_login(t.url)
    return [shim, pushed]


def bring_up(t: Target) -> list[str]:
    return [start_server(t), *migrate(t)]
