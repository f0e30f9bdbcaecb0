"""The development stack: the project's own cluster, DATABASE_URL, migrations applied
by the Supabase CLI, and the platform shim applied only where Supabase is absent."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devstack import migrations, platform
from devstack.settings import LOCAL_DIR, ROOT


def devstack(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_wrong_database_url_names_what_it_tried() -> None:
    result = devstack(
        "status", env={"DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/nowhere"}
    )
    assert result.returncode == 1
    assert (
        "cannot connect to postgresql://nobody:***@127.0.0.1:1/nowhere (from DATABASE_URL)"
        in result.stderr
    )
    assert "secret" not in result.stderr


def test_running_cluster_is_reused(server_url: str) -> None:
    result = devstack("start")
    assert result.returncode == 0, result.stderr
    assert "reused the running cluster" in result.stdout


def test_every_migration_is_recorded_by_the_cli(db: psycopg.Connection[tuple[object, ...]]) -> None:
    files = sorted(p.name.split("_", 1)[0] for p in migrations.MIGRATIONS_DIR.glob("*.sql"))
    rows = db.execute(
        "select version from supabase_migrations.schema_migrations order by 1"
    ).fetchall()
    assert [r[0] for r in rows] == files


def test_cli_url_keeps_the_cli_away_from_docker() -> None:
    url = migrations.cli_url("postgresql://postgres:pw@127.0.0.1:54322/postgres")
    assert url == "postgresql://postgres:pw@localhost:54322/postgres?sslmode=disable"
    remote = "postgresql://postgres:pw@db.example.supabase.co:5432/postgres"
    assert migrations.cli_url(remote) == remote


@pytest.fixture
def spare_cluster() -> Iterator[dict[str, str]]:
    """A second, throwaway cluster of the project's own kind, on a free port."""
    folder = LOCAL_DIR / "test-clusters" / f"c{os.getpid()}"
    env = {"UTTER_PG_DIR": str(folder), "UTTER_DB_PORT": str(free_port())}
    yield env
    devstack("stop", env=env)
    shutil.rmtree(folder, ignore_errors=True)


def test_cluster_keeps_its_data_across_stop_and_start(spare_cluster: dict[str, str]) -> None:
    started = devstack("start", env=spare_cluster)
    assert started.returncode == 0, started.stderr
    assert "started the cluster" in started.stdout
    url = f"postgresql://postgres:postgres@127.0.0.1:{spare_cluster['UTTER_DB_PORT']}/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table kept (note text)")
        conn.execute("insert into kept values ('survives a restart')")
        settings = dict(
            conn.execute(
                "select name, setting from pg_settings where name in ('wal_level', 'listen_addresses')"
            ).fetchall()
        )
    assert settings == {"wal_level": "logical", "listen_addresses": "127.0.0.1"}
    assert devstack("stop", env=spare_cluster).returncode == 0
    assert devstack("start", env=spare_cluster).returncode == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("select note from kept").fetchall() == [("survives a restart",)]


def test_shim_is_skipped_on_supabase(spare_cluster: dict[str, str]) -> None:
    assert devstack("start", env=spare_cluster).returncode == 0
    url = f"postgresql://postgres:postgres@127.0.0.1:{spare_cluster['UTTER_DB_PORT']}/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        # What only the Storage API leaves behind: its own migrations table.
        conn.execute("create schema storage")
        conn.execute("create table storage.migrations (id integer primary key, name text)")
    assert platform.apply(url) == "Supabase database: platform shim not needed"
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select to_regnamespace('auth') is null").fetchone()
        assert row == (True,)


def test_the_cluster_superuser_is_not_postgres(spare_cluster: dict[str, str]) -> None:
    assert devstack("start", env=spare_cluster).returncode == 0
    url = f"postgresql://postgres:postgres@127.0.0.1:{spare_cluster['UTTER_DB_PORT']}/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select rolsuper, rolcreaterole, rolbypassrls, (select rolname from pg_roles where oid = 10) "
            "from pg_roles where rolname = current_user"
        ).fetchone()
        assert row == (False, True, True, "supabase_admin")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("create extension file_fdw")


def test_shim_files_are_not_migrations() -> None:
    shim = {Path(p).name for p in platform.shim_files()}
    assert shim and not shim & {p.name for p in migrations.MIGRATIONS_DIR.glob("*.sql")}


def test_a_cluster_made_before_a_setting_existed_gets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devstack import cluster

    conf = tmp_path / "postgresql.conf"
    conf.write_text("# max_connections = 100\nmax_connections = 300\ntimezone = 'UTC'\n")
    monkeypatch.setattr(cluster, "DATA_DIR", tmp_path)
    added = cluster.add_missing_settings()
    assert "max_connections" not in added and "timezone" not in added
    assert {"shared_preload_libraries", "cron.database_name"} <= set(added)
    text = conf.read_text()
    assert text.count("max_connections = 300") == 1
    assert "shared_preload_libraries = 'pg_cron,pg_stat_statements'" in text
    assert cluster.add_missing_settings() == [], "a second start adds nothing"
