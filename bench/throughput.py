"""Throughput end to end with an engine that answers at once (claim → store → complete
→ broadcast, per job), with 1, 2 and 4 listener processes draining the same backlog of
user inserts; against a bare pgmq read → archive loop over the same number of
messages on the same machine. The database time per job is what the server spent
executing the listeners' statements (pg_stat_statements), divided by the jobs."""

from __future__ import annotations

import time

from bench.common import (
    NO_DATABASE_TIME,
    WATCHER,
    DatabaseTime,
    Result,
    connect,
    make_backlog,
    start_listener,
)

JOBS = 2000


def _drain_with_listeners(url: str, listeners: int) -> tuple[float, float | None]:
    """Jobs per second, and the database's milliseconds per job for the listeners'
    statements (the backlog's inserts and this watcher's polls left out)."""
    with connect(url) as conn:
        make_backlog(conn, JOBS // 10)
    database_time = DatabaseTime(url)
    watcher = connect(url)
    try:
        database_time.reset()
        processes = [start_listener(url) for _ in range(listeners)]
        started = time.perf_counter()
        try:
            while watcher.execute(
                WATCHER + "select count(*) as n from tasks where status <> 'completed'"
            ).fetchone()["n"]:  # type: ignore[index]
                time.sleep(0.02)
            rate = JOBS / (time.perf_counter() - started)
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
        spent = database_time.milliseconds()
    finally:
        watcher.close()
        database_time.close()
    return rate, None if spent is None else spent / JOBS


def _bare_pgmq_loop(url: str) -> float:
    with connect(url) as conn:
        conn.execute("select pgmq.create('bench_bare_loop')")
        conn.execute(
            "select pgmq.send_batch('bench_bare_loop', array_agg(jsonb_build_object('i', n))) "
            f"from generate_series(1, {JOBS}) n"
        )
        started = time.perf_counter()
        done = 0
        while done < JOBS:
            rows = conn.execute("select msg_id from pgmq.read('bench_bare_loop', 30, 8)").fetchall()
            for row in rows:
                conn.execute("select pgmq.archive('bench_bare_loop', %s::bigint)", (row["msg_id"],))
            done += len(rows)
        return JOBS / (time.perf_counter() - started)


def run(url: str) -> list[Result]:
    bare = _bare_pgmq_loop(url)
    results = [
        Result(
            "throughput", "bare pgmq read (8) + archive loop, one connection", JOBS, per_second=bare
        )
    ]
    for listeners in (1, 2, 4):
        rate, per_job_ms = _drain_with_listeners(url, listeners)
        database = NO_DATABASE_TIME if per_job_ms is None else f"database {per_job_ms:.2f} ms/job"
        results.append(
            Result(
                "throughput",
                f"{listeners} listener process{'es' if listeners > 1 else ''}, tone engine",
                JOBS,
                per_second=rate,
                note=f"{rate / bare:.2f}x the bare loop; {database}",
                key=f"ours.drain.{listeners}",
                database_ms_per_job=per_job_ms,
            )
        )
    return results
