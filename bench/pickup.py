"""Pickup latency: from the commit of a user's insert to the moment the engine is
called, at a light steady rate and at a burst; against a consumer that polls every
2 s (the old app's interval) and a pgmq `read_with_poll` loop, fed the same way. The
inserts come from a process of their own (bench/producer.py)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.common import Result, connect, timing
from bench.producer import run_producer
from devstack.settings import worker_url
from gpu.engine import Audio, CloneRequest, DesignRequest, JobContext
from gpu.tone_engine import ToneEngine
from listener.app import build_listener
from listener.settings import ListenerSettings

LIGHT_RATE_PER_SECOND = 20
LIGHT_COUNT = 200
BURST_COUNT = 200


class StopwatchEngine(ToneEngine):
    """The tone engine, noting when each task reached it."""

    def __init__(self) -> None:
        super().__init__(seconds=0.01)
        self.called_at: dict[str, float] = {}
        self.expected = 0
        self.all_called = asyncio.Event()

    def _note(self, job: JobContext) -> None:
        self.called_at[job.task_id] = time.perf_counter()
        if len(self.called_at) >= self.expected:
            self.all_called.set()

    async def design(self, request: DesignRequest, job: JobContext) -> Audio:
        self._note(job)
        return await super().design(request, job)

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio:
        self._note(job)
        return await super().clone(request, job)


async def _listener_run(
    url: str, users: list[uuid.UUID], count: int, interval: float
) -> list[float]:
    engine = StopwatchEngine()
    settings = ListenerSettings(
        UTTER_LISTENER_DATABASE_URL=worker_url(url),
        engine="tone",
        concurrency_design_preview=8,
        storage_dir=Path(tempfile.mkdtemp(prefix="utter-bench-")),
    )
    listener = build_listener(settings, engine=engine, normalise_reference=lambda data: (data, 0.0))
    engine.expected = count
    running = asyncio.create_task(listener.run())
    await listener.ready.wait()
    committed = await asyncio.to_thread(run_producer, url, "previews", count, interval, users)
    await asyncio.wait_for(engine.all_called.wait(), 120)
    with connect(url) as admin:
        task_of = {
            str(r["design_preview_id"]): str(r["id"])
            for r in admin.execute(
                "select id, design_preview_id from tasks where type = 'design_preview'"
            ).fetchall()
        }
    listener.stop()
    await running
    return [
        (engine.called_at[task_of[p]] - t) * 1000
        for p, t in committed.items()
        if task_of[p] in engine.called_at
    ]


def _baseline_run(
    url: str, count: int, interval: float, read: Callable[[psycopg.Connection[Any]], list[Any]]
) -> list[float]:
    received: dict[str, float] = {}
    done = threading.Event()

    def consume() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not done.is_set() or len(received) < count:
                for msg_id, body in read(conn):
                    received[str(body["i"])] = time.perf_counter()
                    conn.execute("select pgmq.archive('bench_pickup', %s::bigint)", (msg_id,))
                if len(received) >= count:
                    return

    consumer = threading.Thread(target=consume)
    consumer.start()
    committed = run_producer(url, "bare", count, interval, [])
    done.set()
    consumer.join(180)
    return [(received[i] - t) * 1000 for i, t in committed.items() if i in received]


def _poll_every_two_seconds(conn: psycopg.Connection[Any]) -> list[Any]:
    rows = conn.execute("select msg_id, message from pgmq.read('bench_pickup', 30, 100)").fetchall()
    if not rows:
        time.sleep(2.0)
    return rows


def _read_with_poll(conn: psycopg.Connection[Any]) -> list[Any]:
    # pgmq's own long poll: up to 5 s, checking every 100 ms (its default interval).
    return conn.execute(
        "select msg_id, message from pgmq.read_with_poll('bench_pickup', 30, 100, 5, 100)"
    ).fetchall()


def run(url: str) -> list[Result]:
    with connect(url) as admin:
        admin.execute("select pgmq.create('bench_pickup')")
        users = [
            uuid.UUID(
                str(
                    admin.execute(
                        "select tests.create_user(%s) as id", (f"pickup-{i}@example.com",)
                    ).fetchall()[0]["id"]
                )
            )
            for i in range(40)
        ]
    interval = 1 / LIGHT_RATE_PER_SECOND
    results = []
    light = asyncio.run(_listener_run(url, users[:20], LIGHT_COUNT, interval))
    results.append(
        timing(
            "pickup",
            f"listener (NOTIFY), light {LIGHT_RATE_PER_SECOND}/s",
            light,
            note="tone engine called",
            key="ours.pickup.light",
        )
    )
    burst = asyncio.run(_listener_run(url, users[20:], BURST_COUNT, 0.0))
    results.append(
        timing(
            "pickup",
            f"listener (NOTIFY), burst of {BURST_COUNT}",
            burst,
            note="tone engine called",
            key="ours.pickup.burst",
        )
    )
    results.append(
        timing(
            "pickup",
            f"consumer polling every 2 s, light {LIGHT_RATE_PER_SECOND}/s",
            _baseline_run(url, LIGHT_COUNT, interval, _poll_every_two_seconds),
        )
    )
    results.append(
        timing(
            "pickup",
            f"pgmq read_with_poll loop (100 ms), light {LIGHT_RATE_PER_SECOND}/s",
            _baseline_run(url, LIGHT_COUNT, interval, _read_with_poll),
        )
    )
    return results
