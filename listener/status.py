"""`python -m listener status`: the operator's view of one deployment, read through the
listener's own database role (worker.status_* functions, schema `worker`).

Prints the queues with their oldest waiting message, the work each listener is
running, the failures of the last hour and today's engine seconds against the
budgets. `--json` prints the same as one JSON object."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from listener.database import QUERIES


@dataclass(frozen=True)
class Report:
    queues: list[dict[str, Any]]
    in_flight: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    spend: list[dict[str, Any]]
    failure_window_minutes: int

    def as_json(self) -> str:
        return json.dumps(
            {
                "queues": self.queues,
                "in_flight": self.in_flight,
                "failures": self.failures,
                "failure_window_minutes": self.failure_window_minutes,
                "spend": self.spend,
            },
            default=_plain,
            indent=2,
        )


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


async def gather(database_url: str, *, failure_window_minutes: int, top_users: int) -> Report:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:

        async def rows(name: str, **params: Any) -> list[dict[str, Any]]:
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(QUERIES[name].encode(), params)
                return await cursor.fetchall()

        return Report(
            queues=await rows("status_queues"),
            in_flight=await rows("status_in_flight"),
            failures=await rows("status_failures", minutes=failure_window_minutes),
            spend=await rows("status_spend", top_users=top_users),
            failure_window_minutes=failure_window_minutes,
        )


def render(report: Report) -> str:
    lines = ["QUEUES"]
    lines.append(f"  {'queue':<16}{'waiting':>8}{'hidden':>8}  oldest waiting")
    for q in report.queues:
        oldest = (
            f"msg {q['oldest_msg_id']} (task {q['oldest_task_id']}), "
            f"{_duration(q['oldest_age_seconds'])} old, read {q['oldest_read_count']}x"
            if q["oldest_msg_id"] is not None
            else "-"
        )
        lines.append(f"  {q['queue']:<16}{q['waiting']:>8}{q['hidden']:>8}  {oldest}")

    lines += ["", "IN FLIGHT (per listener)"]
    if not report.in_flight:
        lines.append("  nothing running")
    for w in report.in_flight:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(w["by_type"].items()))
        lines.append(
            f"  {w['worker_id'] or '(unclaimed)'}: {w['running']} running ({kinds}); "
            f"oldest started {_clock(w['oldest_started_at'])}, "
            f"last heartbeat {_clock(w['last_heartbeat_at'])}"
        )

    lines += ["", f"FAILURES (last {report.failure_window_minutes} min)"]
    if not report.failures:
        lines.append("  none")
    for f in report.failures:
        lines.append(
            f"  {f['failures']:>4} x {f['type']}: {f['reason']} (last {_clock(f['last_failed_at'])})"
        )

    lines += ["", "SPEND TODAY (engine seconds, UTC day)"]
    for s in report.spend:
        who = "service" if s["scope"] == "global" else f"user {s['user_id']}"
        lines.append(
            f"  {who}: {_seconds(s['used_gpu_seconds'])} of {_budget(s['budget_gpu_seconds'])}"
            f" over {s['tasks']} tasks"
        )
    return "\n".join(lines)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S UTC") if moment is not None else "-"


def _seconds(value: Decimal | None) -> str:
    return f"{float(value or 0):.1f} s"


def _budget(value: Decimal | None) -> str:
    if value is None:
        return "no budget"
    return f"{float(value):.0f} s budget ({float(value) / 3600:.1f} h)"


def parse_flags(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m listener status", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--failures-minutes", type=int, default=60, help="how far back failures are counted"
    )
    parser.add_argument("--top-users", type=int, default=5, help="biggest spenders to list")
    flags = parser.parse_args(argv)
    if flags.failures_minutes <= 0:
        parser.error("--failures-minutes must be positive")
    if flags.top_users < 0:
        parser.error("--top-users must not be negative")
    return flags
