"""What every benchmark shares: a fresh database, users acting as the browser does,
percentiles, and a table row for docs/performance.md."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from devstack import cluster, testdb
from devstack.processes import spawn_listener
from devstack.settings import admin_url, target, with_dbname


@dataclass
class Result:
    benchmark: str
    subject: str
    n: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    per_second: float | None = None
    note: str = ""
    # Names the rows bench/goals.py compares; empty for the rest.
    key: str = ""
    database_ms_per_job: float | None = None


def percentiles(samples_ms: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timing(
    benchmark: str, subject: str, samples_ms: Sequence[float], note: str = "", key: str = ""
) -> Result:
    p50, p99 = percentiles(samples_ms)
    return Result(benchmark, subject, len(samples_ms), p50, p99, note=note, key=key)


@contextmanager
def fresh_database() -> Iterator[str]:
    t = target()
    if not t.from_env:
        cluster.start()
        cluster.wait_until_accepting()
    url = testdb.create(t.url, prefix="utter_bench")
    try:
        # Benchmarks load one user far past the tier caps and request limits; what they
        # measure is the work, with the limits' checks still run on every insert.
        with connect(url) as conn:
            conn.execute(
                "select tests.allow_concurrent_jobs(1000000), tests.allow_requests(1000000)"
            )
        yield url
    finally:
        testdb.drop(t.url, url)


def connect(url: str) -> psycopg.Connection[dict[str, object]]:
    return psycopg.connect(url, row_factory=dict_row, autocommit=True)


# Users with a ready (designed) voice each, made through the same inserts and worker
# functions the product uses, without a listener.
MAKE_USERS = """
create temporary table bench_users (user_id uuid, voice_id uuid);
do $$
declare
  uid uuid;
  preview uuid;
  task public.tasks;
begin
  for i in 1..%(count)s loop
    uid := tests.create_user('bench-' || i || '-' || gen_random_uuid() || '@example.com');
    perform set_config('request.jwt.claims', json_build_object('sub', uid, 'role', 'authenticated')::text, true);
    insert into design_previews (instruct, text, language) values ('A calm voice', 'Hello there.', 'English')
    returning id into preview;
    select * into task from tasks where design_preview_id = preview;
    perform worker.claim_task('design_preview', task.msg_id, task.id, 'bench', 3);
    perform worker.complete_task(task.id, 'bench', '{"duration_seconds": 1}');
    insert into voices (name, design_preview_id) values ('Bench voice', preview);
    insert into bench_users select uid, v.id from voices v where v.user_id = uid;
  end loop;
end
$$;
"""


def users_with_voices(
    conn: psycopg.Connection[dict[str, object]], count: int
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    with conn.transaction():
        conn.execute(MAKE_USERS.replace("%(count)s", str(int(count))).encode())
        rows = conn.execute("select user_id, voice_id from bench_users").fetchall()
        conn.execute("drop table bench_users")
    return [(uuid.UUID(str(r["user_id"])), uuid.UUID(str(r["voice_id"]))) for r in rows]


def make_backlog(
    conn: psycopg.Connection[dict[str, object]], users: int, per_user: int = 10
) -> None:
    """`users` times `per_user` design previews, each inserted as its user, taking turns
    between the users: the queue's order is then as mixed as many users make it, and a
    listener's slots hold no more of one user's jobs at once than the tier caps allow
    in production (bench/findings.md)."""
    conn.execute(
        f"""
        do $$
        declare
          uids uuid[];
          uid uuid;
        begin
          select array_agg(tests.create_user('backlog-' || i || '-' || gen_random_uuid() || '@example.com'))
          into uids from generate_series(1, {int(users)}) i;
          for n in 1..{int(per_user)} loop
            foreach uid in array uids loop
              perform set_config('request.jwt.claims',
                                 json_build_object('sub', uid, 'role', 'authenticated')::text, true);
              insert into design_previews (instruct, text, language)
              values ('A warm voice', 'Line ' || n, 'English');
            end loop;
          end loop;
        end
        $$
        """.encode()
    )


def wait_until_all_completed(url: str, within: float = 600.0) -> None:
    """Blocks until no task is left unfinished (run it in a thread from async code)."""
    deadline = time.monotonic() + within
    with connect(url) as admin:
        while admin.execute(
            "select count(*) as n from tasks where status <> 'completed'"
        ).fetchall()[0]["n"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"tasks still unfinished after {within:.0f}s")
            time.sleep(0.02)


def start_listener(url: str) -> subprocess.Popen[bytes]:
    """A listener process as the throughput and memory benchmarks run it."""
    return spawn_listener(
        url,
        Path(tempfile.mkdtemp(prefix="utter-bench-")),
        UTTER_CONCURRENCY_DESIGN_PREVIEW="8",
        UTTER_BATCH_SIZE="8",
    )


# Carried by the benchmark's own polls, so the database time leaves them out.
WATCHER = "/* bench watcher */ "


class DatabaseTime:
    """Execution time the server spent on one database's statements (pg_stat_statements,
    top-level statements, so a trigger's time is inside its insert's), from `reset()` to
    `milliseconds()`, leaving out the benchmark's own polls (marked with WATCHER). It
    reads the server-wide view from the `postgres` database, so the benchmark holds no
    superuser session in the database it drops afterwards."""

    def __init__(self, url: str) -> None:
        self.database = url.rsplit("/", 1)[-1].split("?", 1)[0]
        self.admin = connect(admin_url(with_dbname(url, "postgres")))
        loaded = self.admin.execute(
            "select current_setting('shared_preload_libraries') like '%pg_stat_statements%' as on"
        ).fetchall()[0]["on"]
        self.available = bool(loaded)
        if self.available:
            self.admin.execute("create extension if not exists pg_stat_statements")

    def reset(self) -> None:
        if self.available:
            self.admin.execute(
                "select pg_stat_statements_reset(0, (select oid from pg_database "
                "where datname = %s), 0)",
                (self.database,),
            )

    def milliseconds(self) -> float | None:
        if not self.available:
            return None
        row = self.admin.execute(
            "select coalesce(sum(total_exec_time), 0) as ms from pg_stat_statements "
            "where dbid = (select oid from pg_database where datname = %s) "
            "and query not like %s",
            (self.database, WATCHER.strip() + "%"),
        ).fetchall()[0]
        return float(str(row["ms"]))

    def close(self) -> None:
        self.admin.close()


NO_DATABASE_TIME = (
    "no database time: the server does not preload pg_stat_statements "
    "(a cluster made before it did: make db-reset)"
)
