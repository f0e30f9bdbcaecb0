"""Counters and latencies, exposed as a JSON file and/or a tiny HTTP endpoint
(`GET /healthz`, `GET /metrics`)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.listening = False
        self.pickup_ms: deque[float] = deque(maxlen=2000)
        self.run_seconds: deque[float] = deque(maxlen=2000)

    def count(self, event: str) -> None:
        self.counts[event] += 1

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


async def serve_http(port: int, metrics: Metrics, depths: QueueDepths) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode(errors="replace").split()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            path = request_line[1] if len(request_line) > 1 else "/"
            if path == "/healthz":
                healthy = metrics.listening
                status = "200 OK" if healthy else "503 Service Unavailable"
                body: dict[str, Any] = {"ok": healthy}
            elif path == "/metrics":
                status, body = (
                    "200 OK",
                    metrics.snapshot() | {"queues": await _depths_or_error(depths)},
                )
            else:
                status, body = "404 Not Found", {"error": "try /healthz or /metrics"}
            payload = json.dumps(body, default=str).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)
