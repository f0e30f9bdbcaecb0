"""`python -m listener status`: the operator's view, read through the listener's own
role, as text and as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from devstack.settings import ROOT, worker_url
from tests.listener.conftest import Admin


def status(database_url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "listener", "status", *flags],
        cwd=ROOT,
        env=os.environ | {"UTTER_LISTENER_DATABASE_URL": worker_url(database_url)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_shows_queues_work_failures_and_spend(admin: Admin) -> None:
    alice, bob = admin.new_user(), admin.new_user()
    first = alice.design_preview()
    second = alice.design_preview()
    bob.design_preview()
    # A listener reads and claims the oldest message: hidden while it runs.
    admin.rows("select worker.claim_next('design_preview', 60, 1, 'listener-on-host-a', 3)")
    running = admin.task_of("design_preview_id", first)
    admin.rows("select worker.record_usage(%s, 'modal', 30.25)", (running["id"],))
    failed = admin.task_of("design_preview_id", bob.design_preview())
    admin.rows("select tests.claim(%s, 'listener-on-host-b')", (failed["id"],))
    admin.rows(
        "select worker.fail_task(%s, 'listener-on-host-b', 'the GPU fell over', false, 0, 3)",
        (failed["id"],),
    )
    admin.rows("update private.usage_budgets set daily_gpu_seconds = 7200 where scope = 'global'")

    result = status(admin.url)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    queue_line = next(line for line in text.splitlines() if "design_preview" in line)
    assert queue_line.split()[:3] == ["design_preview", "2", "1"]
    assert "listener-on-host-a: 1 running (1 design_preview)" in text
    assert "1 x design_preview: the GPU fell over" in text
    assert "service: 30.2 s of 7200 s budget (2.0 h) over 1 tasks" in text
    assert f"user {alice.user_id}: 30.2 s of 1800 s budget (0.5 h) over 1 tasks" in text

    report = json.loads(status(admin.url, "--json").stdout)
    queues = {q["queue"]: q for q in report["queues"]}
    assert set(queues) == {
        "generate",
        "design_preview",
        "clone",
        "transcribe",
        "storage_cleanup",
        "checkout",
    }
    assert queues["generate"]["oldest_msg_id"] is None
    oldest_waiting = admin.task_of("design_preview_id", second)
    assert queues["design_preview"]["oldest_task_id"] == str(oldest_waiting["id"])
    assert queues["design_preview"]["oldest_read_count"] == 0
    assert report["in_flight"][0]["by_type"] == {"design_preview": 1}
    assert report["failures"][0]["failures"] == 1
    assert report["spend"][0] == {
        "scope": "global",
        "user_id": None,
        "used_gpu_seconds": 30.25,
        "budget_gpu_seconds": 7200.0,
        "tasks": 1,
    }


def test_status_says_why_it_cannot_read(admin: Admin) -> None:
    result = status(admin.url.replace(admin.url.rsplit("/", 1)[-1], "no_such_database"))
    assert result.returncode == 1
    assert "cannot read the status from the database" in result.stderr
    assert "no_such_database" in result.stderr

    result = status(admin.url, "--failures-minutes", "0")
    assert result.returncode == 2
    assert "--failures-minutes must be positive" in result.stderr
