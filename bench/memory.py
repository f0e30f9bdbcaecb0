"""Memory: a listener's peak RSS while it drains a 10,000-message backlog, beside the
same listener idle on an empty queue."""

from __future__ import annotations

import time

from bench.common import Result, connect, make_backlog, start_listener
from devstack.processes import rss_kib

BACKLOG = 10_000
DRAIN_SECONDS = 45.0


def run(url: str) -> list[Result]:
    with connect(url) as admin:
        idle = start_listener(url)
        time.sleep(3.0)
        _, idle_peak = rss_kib(idle.pid)
        idle.terminate()
        idle.wait(30)

        make_backlog(admin, BACKLOG // 10)
        busy = start_listener(url)
        started = time.monotonic()
        peak = 0
        while time.monotonic() - started < DRAIN_SECONDS:
            _, peak = rss_kib(busy.pid)
            left = admin.execute(
                "select count(*) as n from tasks where status <> 'completed'"
            ).fetchone()["n"]  # type: ignore[index]
            if not left:
                break
            time.sleep(0.2)
        drained = BACKLOG - int(str(left))
        busy.terminate()
        busy.wait(30)
    return [
        Result(
            "memory",
            "listener idle, empty queues (peak RSS)",
            1,
            note=f"{idle_peak / 1024:.1f} MiB",
        ),
        Result(
            "memory",
            f"listener draining a {BACKLOG:,} backlog (peak RSS)",
            drained,
            note=f"{peak / 1024:.1f} MiB after {drained:,} jobs; {peak / idle_peak:.2f}x idle",
        ),
    ]
