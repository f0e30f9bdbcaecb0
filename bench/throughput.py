"""Throughput end to end with an engine that answers at once (claim → store → complete
→ broadcast, per job), with 1, 2 and 4 listener processes draining the same backlog of
user inserts; against a bare pgmq read → archive loop over the same number of
messages on the same machine."""

from __future__ import annotations

import time

from bench.common import Result, connect, make_backlog, start_listener

JOBS = 2000


def _drain_with_listeners(url: str, listeners: int) -> float:
    with connect(url) as admin:
        make_backlog(admin, JOBS // 10)
        processes = [start_listener(url) for _ in range(listeners)]
        started = time.perf_counter()
        try:
            while admin.execute(
                "select count(*) as n from tasks where status <> 'completed'"
            ).fetchone()["n"]:  # type: ignore[index]
                time.sleep(0.02)
            return JOBS / (time.perf_counter() - started)
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)


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
        rate = _drain_with_listeners(url, listeners)
        results.append(
            Result(
                "throughput",
                f"{listeners} listener process{'es' if listeners > 1 else ''}, tone engine",
                JOBS,
                per_second=rate,
                note=f"{rate / bare:.2f}x the bare loop",
            )
        )
    return results
