"""`make demo`'s journey in its short form, on a database of its own: it must finish,
exit 0 and leave valid WAV files where it says."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import wave
from pathlib import Path

from devstack.settings import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_demo_clones_generates_and_designs(fresh_database_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--short"],
        cwd=ROOT,
        env=os.environ
        | {
            "DATABASE_URL": fresh_database_url,
            "UTTER_RELAY_PORT": str(free_port()),
            "UTTER_STORAGE_DIR": str(tmp_path),
            "UTTER_ENGINE": "espeak",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "subscribed to user:" in result.stdout
    assert re.search(r"task clone\s+completed", result.stdout)
    wavs = [
        Path(line.strip()) for line in result.stdout.splitlines() if line.strip().endswith(".wav")
    ]
    assert len(wavs) == 3
    for path in wavs:
        assert path.is_relative_to(tmp_path)
        with wave.open(str(path)) as audio:
            assert audio.getnframes() > 0 and audio.getsampwidth() == 2
