"""Listeners as real processes on the local stack, for the tests and benchmarks that
need what only a process has: signals, kill -9, its own memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack.settings import ROOT, worker_url


def spawn_listener(
    database_url: str, storage: Path, *, log: Path | None = None, **env: str
) -> subprocess.Popen[bytes]:
    """`python -m listener` on the tone engine against `database_url` (as utter_worker);
    `env` adds or overrides UTTER_* settings. With `log`, its INFO log (JSON lines) is
    appended to that file; otherwise it logs nothing."""
    settings = {
        "UTTER_LISTENER_DATABASE_URL": worker_url(database_url),
        "UTTER_ENGINE": "tone",
        "UTTER_STORAGE_DIR": str(storage),
    } | env
    if log is None:
        return subprocess.Popen(
            [sys.executable, "-m", "listener", "--log-level", "WARNING"],
            cwd=ROOT,
            env=os.environ | settings,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "listener", "--log-level", "INFO"],
            cwd=ROOT,
            env=os.environ | settings,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from /proc."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
