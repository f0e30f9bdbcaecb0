"""procrastinate as a benchmark subject, in a database of its own: its schema, its
tasks (a no-op, one UPDATE, and one that notes when it started) and a worker process.

  main([URL, pickup|noop|update, CONCURRENCY, EXPECTED?]) (bench/peers.py starts it)

`pickup` prints "ready", then, once EXPECTED jobs have started, a JSON object mapping
each job's `i` to the moment its task was called on `time.perf_counter()` (the clock
bench/producer.py stamps commits with) and exits. `noop` and `update` run until
SIGTERM; the benchmark watches the jobs table drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time

import procrastinate

# One row per job for the one-UPDATE handler, so concurrent jobs never wait on a lock.
DONE_TABLE = "create table bench_done (i int primary key, done_at timestamptz)"
UPDATE_ONE_ROW = "update bench_done set done_at = now() where i = %(i)s"


def make_app(connector: procrastinate.BaseConnector) -> procrastinate.App:
    app = procrastinate.App(connector=connector)

    @app.task(name="noop", queue="noop")
    async def noop(i: int) -> None:
        return None

    @app.task(name="update", queue="update", pass_context=True)
    async def update(context: procrastinate.JobContext, i: int) -> None:
        await context.app.connector.execute_query_async(UPDATE_ONE_ROW, i=i)

    @app.task(name="pickup", queue="pickup")
    async def pickup(i: int) -> None:
        STARTED[i] = time.perf_counter()
        if len(STARTED) >= EXPECTED[0]:
            ALL_STARTED.set()

    return app


STARTED: dict[int, float] = {}
EXPECTED = [0]
ALL_STARTED = asyncio.Event()


def sync_app(url: str) -> procrastinate.App:
    """For deferring from plain (synchronous) code, as the producer and enqueue do."""
    return make_app(procrastinate.SyncPsycopgConnector(conninfo=url))


async def _work(url: str, mode: str, concurrency: int) -> None:
    app = make_app(procrastinate.PsycopgConnector(conninfo=url))
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=[mode], concurrency=concurrency, install_signal_handlers=False
            )
        )
        await asyncio.sleep(0.5)  # the worker has connected and is listening
        print("ready", flush=True)
        if mode == "pickup":
            await ALL_STARTED.wait()
            print(json.dumps(STARTED), flush=True)
        else:
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


def install_schema(url: str) -> None:
    app = sync_app(url)
    with app.open():
        app.schema_manager.apply_schema()


def main(argv: list[str]) -> int:
    url, mode, concurrency, *rest = argv
    if rest:
        EXPECTED[0] = int(rest[0])
    asyncio.run(_work(url, mode, int(concurrency)))
    return 0
