"""`python -m devstack COMMAND`: the database side of the local stack.

up        start the cluster (unless DATABASE_URL is set), apply the platform shim,
          apply migrations with the Supabase CLI, print the state
start     start (or reuse) the project cluster
stop      stop the project cluster (data is kept)
status    print the state of the target database
migrate   apply the shim (non-Supabase only) and pending migrations
reset     `supabase db reset`: a clean slate, then every migration again
lint      `supabase db lint`, failing on warnings
url       print the target database URL
testdb-create / testdb-drop URL   throwaway databases for tests
"""

from __future__ import annotations

import sys

from devstack import cluster, migrations, platform, stack, testdb
from devstack.database import DatabaseUnreachable, is_supabase
from devstack.settings import Target, target
from devstack.stack import connect_to


def reset(t: Target) -> str:
    with connect_to(t) as conn:
        if is_supabase(conn):
            return migrations.reset(t.url)
        # pgmq's SQL is ours here (the shim's), so its queues go with the slate.
        conn.execute("drop schema if exists pgmq cascade")
    platform.drop_privileged_extensions(t.url)

    def reapply_shim() -> None:
        platform.apply(t.url)

    return migrations.reset(t.url, then_before_rest=reapply_shim)


def status(t: Target) -> None:
    with connect_to(t) as conn:
        version = conn.execute("show server_version").fetchone()
        print(f"database: {t.redacted} (PostgreSQL {version[0] if version else '?'})")
        if not t.from_env:
            print(f"cluster data: {cluster.DATA_DIR}")
        has_history = conn.execute(
            "select to_regclass('supabase_migrations.schema_migrations') is not null"
        ).fetchone()
        if has_history and has_history[0]:
            rows = conn.execute(
                "select version, name from supabase_migrations.schema_migrations order by version"
            ).fetchall()
            print(f"migrations applied by the Supabase CLI: {len(rows)}")
            for version_, name in rows:
                print(f"  {version_}  {name}")
        else:
            print("migrations applied by the Supabase CLI: none yet")
        has_pgmq = conn.execute("select to_regclass('pgmq.meta') is not null").fetchone()
        if has_pgmq and has_pgmq[0]:
            queues = conn.execute(
                "select queue_name, queue_length, total_messages from pgmq.metrics_all() "
                "order by queue_name"
            ).fetchall()
            print(f"pgmq queues: {len(queues)}")
            for name, length, total in queues:
                print(f"  {name}: {length} waiting, {total} ever sent")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    t = target()
    try:
        if command == "up":
            print(*stack.bring_up(t), sep="\n")
            status(t)
        elif command == "start":
            print(stack.start_server(t))
        elif command == "stop":
            if t.from_env:
                print("DATABASE_URL is set: not stopping a database this project does not own")
            else:
                print(cluster.stop())
        elif command == "status":
            status(t)
        elif command == "migrate":
            print(*stack.migrate(t), sep="\n")
        elif command == "reset":
            print(reset(t))
        elif command == "lint":
            print(migrations.lint(t.url) or "supabase db lint: no issues")
        elif command == "url":
            print(t.url)
        elif command == "testdb-create":
            print(testdb.create(t.url))
        elif command == "testdb-drop":
            if len(rest) != 1:
                print("usage: python -m devstack testdb-drop URL", file=sys.stderr)
                return 2
            testdb.drop(t.url, rest[0])
        else:
            print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
            return 2
    except (DatabaseUnreachable, cluster.ClusterError, migrations.MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
