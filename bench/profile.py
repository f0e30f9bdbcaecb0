"""Where the time goes: a sampling profile of the listener's hot path while it drains
a backlog in-process, and EXPLAIN (ANALYZE, BUFFERS) of the user's insert (with its
triggers) and of the queue read a claim starts with."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pyinstrument import Profiler

from bench.common import (
    WATCHER,
    DatabaseTime,
    connect,
    make_backlog,
    start_listener,
    users_with_voices,
    wait_until_all_completed,
)
from devstack.acting import act_as
from devstack.settings import ROOT, admin_url, worker_url
from gpu.tone_engine import ToneEngine
from listener.app import build_listener
from listener.settings import ListenerSettings

JOBS = 1000


async def _drain(url: str) -> None:
    settings = ListenerSettings(
        UTTER_LISTENER_DATABASE_URL=worker_url(url),
        engine="tone",
        concurrency_design_preview=8,
        batch_size=8,
        storage_dir=Path(tempfile.mkdtemp(prefix="utter-bench-")),
    )
    listener = build_listener(
        settings, engine=ToneEngine(), normalise_reference=lambda data: (data, 0.0)
    )
    running = asyncio.create_task(listener.run())
    await asyncio.to_thread(wait_until_all_completed, url)
    listener.stop()
    await running


def listener_profile(url: str) -> str:
    with connect(url) as admin:
        make_backlog(admin, JOBS // 10)
    profiler = Profiler(interval=0.0005, async_mode="enabled")
    started = time.perf_counter()
    with profiler:
        asyncio.run(_drain(url))
    seconds = time.perf_counter() - started
    text = profiler.output_text(unicode=False, color=False, show_all=False, short_mode=True)
    text = text.replace(f"{ROOT}/", "")  # the report names files by their place in the repository
    return f"{JOBS} jobs in {seconds:.1f} s in one process\n\n" + "\n".join(text.splitlines()[:60])


def explain_insert(url: str) -> str:
    with connect(url) as conn:
        ((user_id, voice_id),) = users_with_voices(conn, 1)
        conn.autocommit = False
        act_as(conn, user_id)
        rows = conn.execute(
            "explain (analyze, buffers, timing) insert into generations (voice_id, text, language) "
            "values (%s, 'Plan this, please.', 'English')",
            (voice_id,),
        ).fetchall()
        conn.rollback()
        read_plan = conn.execute(
            "explain (analyze, buffers) select * from pgmq.q_generate where vt <= clock_timestamp() "
            "order by msg_id limit 8 for update skip locked"
        ).fetchall()
        conn.rollback()
    lines = [str(next(iter(r.values()))) for r in rows]
    lines += ["", "-- the read a claim starts with (pgmq.read's inner query):"]
    lines += [str(next(iter(r.values()))) for r in read_plan]
    return "\n".join(lines)


DRAINED_JOBS = 1000


def database_profile(url: str, jobs: int = DRAINED_JOBS) -> str:
    """Where one listener's database time goes while it drains a backlog: per job, the
    self time of every function (pg_stat_user_functions, track_functions = all) and the
    execution time of every top-level statement (pg_stat_statements), largest first.
    Self time leaves out the functions a function calls, so the rows add up."""
    with connect(url) as conn:
        make_backlog(conn, jobs // 10)

    def drain() -> None:
        listener = start_listener(url)
        try:
            wait_until_all_completed(url)
        finally:
            listener.terminate()
            listener.wait(30)

    functions, top = _database_time(url, drain)
    return _render(f"one listener draining {jobs} jobs; ms and calls per job", jobs, functions, top)


INSERTS = 1000


def insert_profile(url: str, inserts: int = INSERTS) -> str:
    """Where a user's generation insert spends its database time: per insert, the self
    time of every function its triggers call, and its statements, as bench/insert_cost.py
    runs them (the claims set as PostgREST does, the insert, the commit)."""
    with connect(url) as admin:
        users = users_with_voices(admin, inserts // 10)

    def insert() -> None:
        with connect(url) as conn:
            conn.autocommit = False
            for i in range(inserts):
                user_id, voice_id = users[i // 10]
                act_as(conn, user_id)
                conn.execute(
                    "insert into generations (voice_id, text, language) values (%s, %s, 'English')",
                    (voice_id, "The quick brown fox jumps over the lazy dog."),
                )
                conn.commit()

    functions, top = _database_time(url, insert)
    return _render(
        f"{inserts} generation inserts; ms and calls per insert", inserts, functions, top
    )


def _database_time(
    url: str, work: Callable[[], None]
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The function and statement times of `work` alone: counters reset just before
    it, read just after."""
    database = url.rsplit("/", 1)[-1].split("?", 1)[0]
    with connect(admin_url(url)) as admin:
        admin.execute(f"alter database \"{database}\" set track_functions = 'all'".encode())
    statements = DatabaseTime(url)
    try:
        with connect(admin_url(url)) as admin:
            admin.execute("select pg_stat_reset()")
        statements.reset()
        work()
        time.sleep(1.5)  # a backend's counters reach the shared view within a second
        with connect(admin_url(url)) as admin:
            functions = admin.execute(FUNCTION_TIMES).fetchall()
        top = statements.admin.execute(
            STATEMENT_TIMES, (database, WATCHER.strip() + "%")
        ).fetchall()
    finally:
        statements.close()
    return functions, top


FUNCTION_TIMES = (
    "select schemaname || '.' || funcname as name, sum(calls) as calls, "
    "sum(self_time) as self_ms, sum(total_time) as total_ms "
    "from pg_stat_user_functions group by 1 order by 3 desc"
)
STATEMENT_TIMES = (
    "select regexp_replace(query, '\\s+', ' ', 'g') as query, calls, "
    "total_exec_time as ms from pg_stat_statements "
    "where dbid = (select oid from pg_database where datname = %s) "
    "and query not like %s order by total_exec_time desc limit 12"
)


def _render(
    title: str, per: int, functions: list[dict[str, object]], top: list[dict[str, object]]
) -> str:
    lines = [title, "", f"{'self ms':>8} {'total ms':>9} {'calls':>6}  function"]
    for row in functions:
        self_ms = float(str(row["self_ms"])) / per
        if self_ms < 0.005:
            continue
        lines.append(
            f"{self_ms:8.3f} {float(str(row['total_ms'])) / per:9.3f} "
            f"{int(str(row['calls'])) / per:6.2f}  {row['name']}"
        )
    lines += ["", f"{'exec ms':>8} {'calls':>6}  top-level statement"]
    for row in top:
        query = str(row["query"])
        lines.append(
            f"{float(str(row['ms'])) / per:8.3f} {int(str(row['calls'])) / per:6.2f}  "
            f"{query[:110]}{'...' if len(query) > 110 else ''}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m bench.profile [insert|drain]: the database profiles alone, each on a
    # fresh database.
    import sys

    from bench.common import fresh_database

    for wanted, profile in (("insert", insert_profile), ("drain", database_profile)):
        if len(sys.argv) < 2 or wanted in sys.argv[1:]:
            with fresh_database() as database_url:
                print(profile(database_url), "\n")
