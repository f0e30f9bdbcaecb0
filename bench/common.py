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
from devstack.settings import target


@dataclass
class Result:
    benchmark: str
    subject: str
    n: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    per_second: float | None = None
    note: str = ""


def percentiles(samples_ms: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timing(benchmark: str, subject: str, samples_ms: Sequence[float], note: str = "") -> Result:
    p50, p99 = percentiles(samples_ms)
    return Result(benchmark, subject, len(samples_ms), p50, p99, note=note)


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
    """`users` times `per_user` design previews, each inserted as its user."""
    conn.execute(
        f"""
        do $$
        declare
          uid uuid;
        begin
          for i in 1..{int(users)} loop
            uid := tests.create_user('backlog-' || i || '-' || gen_random_uuid() || '@example.com');
            perform set_config('request.jwt.claims',
                               json_build_object('sub', uid, 'role', 'authenticated')::text, true);
            insert into design_previews (instruct, text, language)
            select 'A warm voice', 'Line ' || n, 'English' from generate_series(1, {int(per_user)}) n;
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
