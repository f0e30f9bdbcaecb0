"""`python -m demo` (`make demo`): bring up the database and migrations, start the relay
and the listener (the Procfile, through honcho), then walk one demo user through
cloning, generating and designing while their updates arrive over Realtime. Ends by
printing where the WAV files are and how long each step took.

  --short    shorter texts (the form `make test` runs)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from demo.journey import Journey, Step
from devstack import cluster, migrations
from devstack.database import DatabaseUnreachable
from devstack.settings import LOCAL_DIR, ROOT, target, worker_url
from devstack.stack import bring_up
from relay.settings import DEFAULT_JWT_SECRET


def bring_up_database() -> str:
    t = target()
    for line in bring_up(t):
        print(line.splitlines()[-1] if line else line)
    print(f"database ready: {t.redacted}")
    return t.url


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def start_processes(
    database_url: str, relay_port: int, storage: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """The Procfile's relay and listener, under honcho, logging to a file."""
    metrics = LOCAL_DIR / "demo" / "listener-metrics.json"
    metrics.unlink(missing_ok=True)
    env = os.environ | {
        "DATABASE_URL": database_url,
        "UTTER_LISTENER_DATABASE_URL": worker_url(database_url),
        "UTTER_RELAY_PORT": str(relay_port),
        "UTTER_STORAGE_DIR": str(storage),
        "UTTER_METRICS_FILE": str(metrics),
        "PYTHONUNBUFFERED": "1",
    }
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "honcho"),
            "start",
            "-f",
            str(ROOT / "Procfile"),
            "relay",
            "listener",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the relay or the listener stopped at start; see {log_path}")
        relay_up = not port_is_free(relay_port)
        listening = metrics.exists() and json.loads(metrics.read_text() or "{}").get("listening")
        if relay_up and listening:
            return process
        time.sleep(0.1)
    stop_processes(process)
    raise RuntimeError(f"the relay and the listener did not come up within 60 s; see {log_path}")


def stop_processes(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def report(steps: list[Step], log_path: Path) -> None:
    print("\nWhat the demo made:")
    for step in steps:
        audio = f"{step.audio_seconds:.1f} s of audio" if step.audio_seconds else ""
        print(f"  {step.name:<40} {step.seconds:6.1f} s   {audio}")
        if step.wav:
            print(f"    {step.wav}")
    print(f"\nrelay and listener logs: {log_path}")


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    short = "--short" in argv
    try:
        database_url = bring_up_database()
    except (DatabaseUnreachable, cluster.ClusterError, migrations.MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    relay_port = int(os.environ.get("UTTER_RELAY_PORT", "54321"))
    if not port_is_free(relay_port):
        print(
            f"error: port {relay_port} is taken; stop what uses it or set UTTER_RELAY_PORT",
            file=sys.stderr,
        )
        return 1
    storage = Path(os.environ.get("UTTER_STORAGE_DIR", str(LOCAL_DIR / "storage"))).resolve()
    (LOCAL_DIR / "demo").mkdir(parents=True, exist_ok=True)
    log_path = LOCAL_DIR / "demo" / "processes.log"
    processes = start_processes(database_url, relay_port, storage, log_path)
    print(
        f"relay on ws://127.0.0.1:{relay_port}/realtime/v1/websocket; listener running (Procfile via honcho)"
    )
    journey = Journey(
        database_url=database_url,
        relay_url=f"http://127.0.0.1:{relay_port}",
        jwt_secret=os.environ.get("UTTER_JWT_SECRET", DEFAULT_JWT_SECRET),
        storage_dir=storage,
        short=short,
    )
    try:
        steps = asyncio.run(journey.run())
    except Exception as exc:
        print(f"error: the demo failed: {exc}; see {log_path}", file=sys.stderr)
        return 1
    finally:
        stop_processes(processes)
    report(steps, log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
