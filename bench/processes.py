"""Listeners as real processes, as they run in production, for the throughput and
memory benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from devstack.settings import ROOT, worker_url


def start_listener(database_url: str, **env: str) -> subprocess.Popen[bytes]:
    settings = {
        "UTTER_LISTENER_DATABASE_URL": worker_url(database_url),
        "UTTER_ENGINE": "tone",
        "UTTER_STORAGE_DIR": tempfile.mkdtemp(prefix="utter-bench-"),
        "UTTER_CONCURRENCY_DESIGN_PREVIEW": "8",
        "UTTER_BATCH_SIZE": "8",
    } | env
    return subprocess.Popen(
        [sys.executable, "-m", "listener", "--log-level", "WARNING"],
        cwd=ROOT,
        env=os.environ | settings,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB, from /proc."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
