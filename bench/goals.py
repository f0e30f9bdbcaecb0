"""The goals against graphile-worker, as ratios of numbers from the same run (the
machine is shared, so only ratios within one run mean anything)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.common import Result

# One listener's database milliseconds per job (pg_stat_statements, bench/throughput.py)
# before this benchmark measured the peers: the yardstick for "database time per job
# halved". Measured once with this benchmark on the code of that day (with the backlog
# of each user's jobs in a row, see bench/findings.md); kept here because that code is
# gone and cannot be run beside today's.
DATABASE_MS_PER_JOB_BEFORE = 5.60


@dataclass
class Goal:
    name: str
    ours_key: str
    theirs_key: str
    value: Callable[[Result], float | None]
    unit: str
    limit: float  # ours / theirs must be at most this (or at least, when higher_is_better)
    higher_is_better: bool = False


GOALS = [
    Goal(
        "pickup p50, light 20/s (graphile-worker c=1)",
        "ours.pickup.light",
        "graphile-worker.pickup.light",
        lambda r: r.p50_ms,
        "ms",
        1.0,
    ),
    Goal(
        "pickup p99, light 20/s (graphile-worker c=1)",
        "ours.pickup.light",
        "graphile-worker.pickup.light",
        lambda r: r.p99_ms,
        "ms",
        1.0,
    ),
    Goal(
        "pickup p50, burst of 200 (graphile-worker c=4)",
        "ours.pickup.burst",
        "graphile-worker.pickup.burst",
        lambda r: r.p50_ms,
        "ms",
        1.0,
    ),
    Goal(
        "user's full insert vs add_job, p50",
        "ours.insert",
        "graphile-worker.insert",
        lambda r: r.p50_ms,
        "ms",
        1.5,
    ),
    Goal(
        "one listener (tone engine) vs graphile-worker c=4, one UPDATE per job",
        "ours.drain.1",
        "graphile-worker.drain.update",
        lambda r: r.per_second,
        "jobs/s",
        1.0,
        higher_is_better=True,
    ),
]


def render(results: list[Result]) -> str:
    by_key = {r.key: r for r in results if r.key}
    rows = [
        "| goal | ours | graphile-worker | ours / theirs | wanted | met |",
        "|---|---|---|---|---|---|",
    ]
    for goal in GOALS:
        ours, theirs = by_key.get(goal.ours_key), by_key.get(goal.theirs_key)
        a = goal.value(ours) if ours else None
        b = goal.value(theirs) if theirs else None
        if a is None or b is None or not b:
            rows.append(f"| {goal.name} | | | | | not measured |")
            continue
        ratio = a / b
        met = ratio >= goal.limit if goal.higher_is_better else ratio <= goal.limit
        wanted = f"{'>=' if goal.higher_is_better else '<='} {goal.limit:g}"
        rows.append(
            f"| {goal.name} | {a:,.2f} {goal.unit} | {b:,.2f} {goal.unit} | {ratio:.2f} "
            f"| {wanted} | {'yes' if met else 'no'} |"
        )
    drain = by_key.get("ours.drain.1")
    now = drain.database_ms_per_job if drain else None
    if now is None or not DATABASE_MS_PER_JOB_BEFORE:
        rows.append(
            "| database ms per job, one listener, vs before | | | | <= 0.5 | not measured |"
        )
    else:
        ratio = now / DATABASE_MS_PER_JOB_BEFORE
        rows.append(
            f"| database ms per job, one listener, vs before | {now:.2f} ms "
            f"| before: {DATABASE_MS_PER_JOB_BEFORE:.2f} ms | {ratio:.2f} | <= 0.5 "
            f"| {'yes' if ratio <= 0.5 else 'no'} |"
        )
    return "\n".join(rows)
