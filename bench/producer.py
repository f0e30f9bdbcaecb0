"""`python -m bench.producer`: stands in for the browsers in the pickup benchmark,
from a process of its own (as PostgREST would be), so the listener under test shares
neither its process nor its interpreter lock. Prints a JSON object mapping each
insert's key to its commit time on `time.perf_counter()`, a system-wide monotonic
clock on Linux, so the listener's process can subtract it from its own readings.

  python -m bench.producer URL previews|bare|graphile|procrastinate COUNT INTERVAL_SECONDS [USER_ID ...]

`graphile` and `procrastinate` enqueue the peers' `pickup` jobs (bench/peers.py) the way
their users do: graphile-worker's `add_job` in SQL, procrastinate's `defer`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from devstack.acting import act_as


def insert_preview(conn: psycopg.Connection[Any], user_id: uuid.UUID, i: int) -> str:
    act_as(conn, user_id)
    row = conn.execute(
        "insert into design_previews (instruct, text, language) values ('A calm voice', %s, 'English') returning id",
        (f"Line {i}",),
    ).fetchone()
    assert row is not None
    return str(row[0])


def send_bare(conn: psycopg.Connection[Any], user_id: uuid.UUID, i: int) -> str:
    conn.execute("select pgmq.send('bench_pickup', %s::jsonb)", (f'{{"i": {i}}}',))
    return str(i)


def add_graphile_job(conn: psycopg.Connection[Any], user_id: uuid.UUID, i: int) -> str:
    conn.execute("select graphile_worker.add_job('pickup', json_build_object('i', %s::int))", (i,))
    return str(i)


SENDERS: dict[str, Callable[[psycopg.Connection[Any], uuid.UUID, int], str]] = {
    "previews": insert_preview,
    "bare": send_bare,
    "graphile": add_graphile_job,
}


def defer_procrastinate_jobs(url: str, count: int, interval: float) -> dict[str, float]:
    from bench.procrastinate_subject import sync_app

    committed: dict[str, float] = {}
    app = sync_app(url)
    with app.open():
        pickup = app.tasks["pickup"]
        for i in range(count):
            pickup.defer(i=i)  # its own transaction, committed on return
            committed[str(i)] = time.perf_counter()
            if interval:
                time.sleep(interval)
    return committed


def produce(
    url: str, mode: str, count: int, interval: float, users: list[uuid.UUID]
) -> dict[str, float]:
    if mode == "procrastinate":
        return defer_procrastinate_jobs(url, count, interval)
    send = SENDERS[mode]
    committed: dict[str, float] = {}
    with psycopg.connect(url) as conn:
        for i in range(count):
            key = send(conn, users[i % len(users)] if users else uuid.uuid4(), i)
            conn.commit()
            committed[key] = time.perf_counter()
            if interval:
                time.sleep(interval)
    return committed


def run_producer(
    url: str, mode: str, count: int, interval: float, users: list[uuid.UUID]
) -> dict[str, float]:
    """Runs the producer as its own process and returns what it printed."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.producer",
            url,
            mode,
            str(count),
            str(interval),
            *map(str, users),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    committed: dict[str, float] = json.loads(result.stdout)
    return committed


if __name__ == "__main__":
    url, mode, count, interval, *user_ids = sys.argv[1:]
    print(
        json.dumps(
            produce(url, mode, int(count), float(interval), [uuid.UUID(u) for u in user_ids])
        )
    )
