"""What a listener counts and measures, served at `GET /metrics` in the Prometheus text
format (with `GET /healthz` beside it) and written as a JSON file for local tools.

Each listener keeps its own registry, so several listeners in one process (tests,
benchmarks) never share counters. Queue depth and age come from the database at
scrape time: they describe the queue, not this process."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# Pickup: from enqueue to claim. Push-driven pickup takes milliseconds; a poll-driven
# one seconds; a backlog minutes.
PICKUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
# Job duration: a clone validation takes a second, a long generation minutes.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800)


class Metrics:
    def __init__(self, engine: str = "unknown") -> None:
        self.engine = engine
        self.started = time.time()
        self.counts: Tally[str] = Tally()
        self.in_flight = 0
        self.listening = False
        self.pickup_ms: deque[float] = deque(maxlen=2000)
        self.run_seconds: deque[float] = deque(maxlen=2000)

        self.registry = CollectorRegistry()
        self._up = Gauge(
            "utter_listener_listening",
            "1 while the listener's LISTEN connection is up (work is seen at once), else 0",
            registry=self.registry,
        )
        self._up.set_function(lambda: 1.0 if self.listening else 0.0)
        self._in_flight = Gauge(
            "utter_jobs_in_flight",
            "Jobs running in this listener",
            ["queue"],
            registry=self.registry,
        )
        self._pickup = Histogram(
            "utter_job_pickup_seconds",
            "From the message's enqueue to this listener's claim",
            ["type", "engine"],
            buckets=PICKUP_BUCKETS,
            registry=self.registry,
        )
        self._duration = Histogram(
            "utter_job_duration_seconds",
            "Engine time of completed jobs",
            ["type", "engine"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._outcomes = Counter(
            "utter_job_outcomes",
            "What became of each message this listener handled, by queue and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )
        self._retries = Counter(
            "utter_job_retries",
            "Attempts that failed and went back to the queue",
            ["type"],
            registry=self.registry,
        )
        self._gpu_seconds = Counter(
            "utter_gpu_seconds",
            "Engine seconds of completed jobs (what the daily budgets count)",
            ["type", "engine"],
            registry=self.registry,
        )
        self._queue_waiting = Gauge(
            "utter_queue_messages",
            "Messages in the queue (waiting or being worked on), from pgmq",
            ["queue"],
            registry=self.registry,
        )
        self._queue_oldest = Gauge(
            "utter_queue_oldest_message_age_seconds",
            "Age of the queue's oldest message, from pgmq (0 when empty)",
            ["queue"],
            registry=self.registry,
        )

    # -- what the worker reports ---------------------------------------------------

    def count(self, outcome: str, job_type: str = "none") -> None:
        self.counts[outcome] += 1
        self._outcomes.labels(job_type, outcome).inc()
        if outcome == "retried":
            self._retries.labels(job_type).inc()

    def job_started(self, queue: str) -> None:
        self.in_flight += 1
        self._in_flight.labels(queue).inc()

    def job_finished(self, queue: str) -> None:
        self.in_flight -= 1
        self._in_flight.labels(queue).dec()

    def picked_up(self, job_type: str, seconds: float) -> None:
        self.pickup_ms.append(seconds * 1000)
        self._pickup.labels(job_type, self.engine).observe(max(seconds, 0.0))

    def completed(self, job_type: str, engine_seconds: float) -> None:
        self.run_seconds.append(engine_seconds)
        self._duration.labels(job_type, self.engine).observe(engine_seconds)
        self._gpu_seconds.labels(job_type, self.engine).inc(engine_seconds)

    def observe_queues(self, queues: list[dict[str, Any]]) -> None:
        for row in queues:
            self._queue_waiting.labels(row["queue"]).set(row["waiting"] or 0)
            self._queue_oldest.labels(row["queue"]).set(row["oldest_seconds"] or 0)

    # -- how it is read --------------------------------------------------------------

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    @staticmethod
    def _summary(values: deque[float]) -> dict[str, float] | None:
        if not values:
            return None
        ordered = sorted(values)
        return {
            "p50": statistics.median(ordered),
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "n": float(len(ordered)),
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "uptime_seconds": round(time.time() - self.started, 1),
            "listening": self.listening,
            "in_flight": self.in_flight,
            "counts": dict(self.counts),
            "pickup_ms": self._summary(self.pickup_ms),
            "run_seconds": self._summary(self.run_seconds),
        }


QueueDepths = Callable[[], Awaitable[list[dict[str, Any]]]]


async def write_file_forever(
    path: Path, metrics: Metrics, depths: QueueDepths, every: float = 2.0
) -> None:
    while True:
        report = metrics.snapshot() | {"queues": await _depths_or_error(depths)}
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(report, default=str, indent=2))
        os.replace(temporary, path)
        await asyncio.sleep(every)


async def _depths_or_error(depths: QueueDepths) -> Any:
    try:
        return await depths()
    except Exception as exc:
        return {"error": str(exc)}


async def _prometheus_body(metrics: Metrics, depths: QueueDepths) -> bytes:
    # A scrape while the database is away still answers: the queue gauges keep their
    # last values and the listener's own counters are current.
    queues = await _depths_or_error(depths)
    if isinstance(queues, list):
        metrics.observe_queues(queues)
    return metrics.prometheus_text()


async def serve_http(
    port: int, metrics: Metrics, depths: QueueDepths, host: str = "127.0.0.1"
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode(errors="replace").split()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            path = request_line[1] if len(request_line) > 1 else "/"
            content_type = "application/json"
            if path == "/healthz":
                healthy = metrics.listening
                status = "200 OK" if healthy else "503 Service Unavailable"
                payload = json.dumps({"ok": healthy}).encode()
            elif path == "/metrics":
                status, content_type = "200 OK", CONTENT_TYPE_LATEST
                payload = await _prometheus_body(metrics, depths)
            else:
                status = "404 Not Found"
                payload = json.dumps({"error": "try /healthz or /metrics"}).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
