"""The peers: graphile-worker (Node) and procrastinate (Python), each in a database of
its own on the same server and in the same run as ours, measured as ours is: pickup at
20 jobs/s (one worker slot) and a burst of 200 (four), fed by the same producer process
(bench/producer.py); the cost of one enqueue (graphile-worker's `add_job`, procrastinate's
`defer`, each its own transaction); and one worker (four slots) draining a backlog of
2,000, once with a no-op handler and once with one UPDATE per job."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from procrastinate.types import JSONValue

from bench.common import NO_DATABASE_TIME, WATCHER, DatabaseTime, Result, connect, timing
from bench.procrastinate_subject import DONE_TABLE, install_schema, sync_app
from bench.producer import run_producer
from devstack import testdb
from devstack.database import connect as server_connect
from devstack.settings import ROOT, target, with_dbname

LIGHT_RATE_PER_SECOND = 20
LIGHT_COUNT = 200
BURST_COUNT = 200
ENQUEUES = 1000
BACKLOG = 2000
BURST_CONCURRENCY = 4
DRAIN_CONCURRENCY = 4


@dataclass
class Peer:
    name: str
    producer_mode: str
    worker: Callable[[str, str, int], list[str]]  # url, mode, concurrency -> argv
    install: Callable[[str], None]
    add_backlog: Callable[[str, str], None]  # url, task
    unfinished: str  # SQL counting jobs of task %(task)s not yet done
    enqueue: Callable[[str], list[float]]


@contextmanager
def peer_database() -> Iterator[str]:
    server = target().url
    name = f"utter_bench_peer_{secrets.token_hex(4)}"
    with server_connect(server) as admin:
        admin.execute(f'create database "{name}"'.encode())
    try:
        yield with_dbname(server, name)
    finally:
        testdb.drop(server, with_dbname(server, name))


def _node_worker(url: str, mode: str, concurrency: int) -> list[str]:
    return [
        "node",
        str(ROOT / "bench" / "graphile_worker_subject.mjs"),
        url,
        mode,
        str(concurrency),
    ]


def _install_graphile_worker(url: str) -> None:
    subprocess.run(
        ["node", str(ROOT / "bench" / "graphile_worker_subject.mjs"), url, "migrate"],
        check=True,
        timeout=120,
    )
    with connect(url) as conn:
        conn.execute(DONE_TABLE)
        conn.execute(f"insert into bench_done (i) select generate_series(1, {BACKLOG})")


def _graphile_backlog(url: str, task: str) -> None:
    with connect(url) as conn:
        conn.execute(
            "select graphile_worker.add_job(%s, json_build_object('i', n)) "
            f"from generate_series(1, {BACKLOG}) n",
            (task,),
        )


def _graphile_enqueue(url: str) -> list[float]:
    samples = []
    with connect(url) as conn:
        for i in range(ENQUEUES):
            started = time.perf_counter()
            # A task no worker here runs, so the jobs wait and disturb nothing.
            conn.execute(
                "select graphile_worker.add_job('enqueued', json_build_object('i', %s::int))", (i,)
            )
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def _procrastinate_worker(url: str, mode: str, concurrency: int) -> list[str]:
    # Not `-m`: procrastinate wants its App defined in an imported module, not __main__.
    entry = "import sys; from bench.procrastinate_subject import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", entry, url, mode, str(concurrency)]


def _install_procrastinate(url: str) -> None:
    install_schema(url)
    with connect(url) as conn:
        conn.execute(DONE_TABLE)
        conn.execute(f"insert into bench_done (i) select generate_series(1, {BACKLOG})")


def _procrastinate_backlog(url: str, task: str) -> None:
    app = sync_app(url)
    with app.open():
        jobs: list[dict[str, JSONValue]] = [{"i": n} for n in range(1, BACKLOG + 1)]
        app.tasks[task].batch_defer(*jobs)


def _procrastinate_enqueue(url: str) -> list[float]:
    samples = []
    app = sync_app(url)
    with app.open():
        # A queue no worker here reads, so the jobs wait and disturb nothing.
        deferrer = app.configure_task("noop", queue="enqueued")
        for i in range(ENQUEUES):
            started = time.perf_counter()
            deferrer.defer(i=i)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


PEERS = [
    Peer(
        "graphile-worker",
        "graphile",
        _node_worker,
        _install_graphile_worker,
        _graphile_backlog,
        "select count(*) as n from graphile_worker.jobs where task_identifier = %(task)s",
        _graphile_enqueue,
    ),
    Peer(
        "procrastinate",
        "procrastinate",
        _procrastinate_worker,
        _install_procrastinate,
        _procrastinate_backlog,
        "select count(*) as n from procrastinate_jobs "
        "where queue_name = %(task)s and status in ('todo', 'doing')",
        _procrastinate_enqueue,
    ),
]


def _pickup(peer: Peer, url: str, count: int, interval: float, concurrency: int) -> list[float]:
    worker = subprocess.Popen(
        [*peer.worker(url, "pickup", concurrency), str(count)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{peer.name}'s worker did not start")
        committed = run_producer(url, peer.producer_mode, count, interval, [])
        output, _ = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    started: dict[str, float] = json.loads(output)
    return [(started[i] - t) * 1000 for i, t in committed.items() if i in started]


def _drain(peer: Peer, url: str, task: str) -> Result:
    peer.add_backlog(url, task)
    database_time = DatabaseTime(url)
    watcher = connect(url)
    try:
        database_time.reset()
        worker = subprocess.Popen(
            peer.worker(url, task, DRAIN_CONCURRENCY), stdout=subprocess.DEVNULL
        )
        started = time.perf_counter()
        try:
            while watcher.execute(WATCHER + peer.unfinished, {"task": task}).fetchall()[0]["n"]:
                if time.perf_counter() - started > 120:
                    raise TimeoutError(f"{peer.name} did not drain {BACKLOG} jobs in 120 s")
                time.sleep(0.02)
            rate = BACKLOG / (time.perf_counter() - started)
        finally:
            worker.terminate()
            worker.wait(30)
        spent = database_time.milliseconds()
    finally:
        watcher.close()
        database_time.close()
    handler = "no-op handler" if task == "noop" else "one UPDATE per job"
    note = NO_DATABASE_TIME if spent is None else f"database {spent / BACKLOG:.2f} ms/job"
    return Result(
        "throughput",
        f"{peer.name}, {handler}, c={DRAIN_CONCURRENCY}",
        BACKLOG,
        per_second=rate,
        note=note,
        key=f"{peer.name}.drain.{task}",
        database_ms_per_job=None if spent is None else spent / BACKLOG,
    )


def run(url: str) -> list[Result]:
    """`url` (a database of ours) is unused: each peer gets a database of its own."""
    results = []
    interval = 1 / LIGHT_RATE_PER_SECOND
    for peer in PEERS:
        with peer_database() as peer_url:
            peer.install(peer_url)
            results.append(
                timing(
                    "pickup",
                    f"{peer.name}, light {LIGHT_RATE_PER_SECOND}/s, c=1",
                    _pickup(peer, peer_url, LIGHT_COUNT, interval, 1),
                    note="no-op handler called",
                    key=f"{peer.name}.pickup.light",
                )
            )
            results.append(
                timing(
                    "pickup",
                    f"{peer.name}, burst of {BURST_COUNT}, c={BURST_CONCURRENCY}",
                    _pickup(peer, peer_url, BURST_COUNT, 0.0, BURST_CONCURRENCY),
                    note="no-op handler called",
                    key=f"{peer.name}.pickup.burst",
                )
            )
            results.append(
                timing(
                    "insert",
                    f"{peer.name}: {'add_job' if peer.producer_mode == 'graphile' else 'defer'}",
                    peer.enqueue(peer_url),
                    note="one job row, its own transaction",
                    key=f"{peer.name}.insert",
                )
            )
            results.append(_drain(peer, peer_url, "noop"))
            results.append(_drain(peer, peer_url, "update"))
    return results
