"""The project-owned PostgreSQL 15 cluster under `.local/postgres`.

PostgreSQL refuses to run as root, so when we are root the server runs as the
`postgres` system user that Debian's package creates; the data stays inside the
project folder either way and the system cluster is never touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from devstack.settings import LOCAL_DIR, local_port

PG_BIN = Path(os.environ.get("UTTER_PG_BIN", "/usr/lib/postgresql/15/bin"))
# UTTER_PG_DIR lets a second checkout (or a test) own a separate cluster.
CLUSTER_DIR = Path(os.environ.get("UTTER_PG_DIR", str(LOCAL_DIR / "postgres"))).resolve()
DATA_DIR = CLUSTER_DIR / "data"
SOCKET_DIR = CLUSTER_DIR / "run"
LOG_FILE = CLUSTER_DIR / "postgres.log"

# Supabase's database runs with logical decoding on (Realtime's Postgres Changes).
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "logical",
    "max_connections": "300",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "shared_buffers": "256MB",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
    "timezone": "'UTC'",
    # pg_cron runs the retention schedules; as on Supabase, its jobs live in `postgres`.
    "shared_preload_libraries": "'pg_cron'",
    "cron.database_name": "'postgres'",
    # Jobs run in background workers, not through a login over TCP (which the
    # password-only host rules here would refuse).
    "cron.use_background_workers": "on",
}


class ClusterError(RuntimeError):
    pass


def _run_as_owner(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, text=True, capture_output=True, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


def _give_to_owner(path: Path) -> None:
    if os.geteuid() != 0:
        return
    owner = pwd.getpwnam("postgres")
    for current in [path, *path.rglob("*")]:
        os.chown(current, owner.pw_uid, owner.pw_gid)


def _let_owner_reach(path: Path) -> None:
    """The server runs as `postgres` but its data lives in the project folder, wherever
    it was cloned. Folders on the way that `postgres` cannot enter get the search (x)
    bit for others, nothing more: no listing, no reading."""
    if os.geteuid() != 0:
        return
    for folder in [*reversed(path.parents), path]:
        reachable = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(folder)], check=False
        )
        if reachable.returncode != 0:
            mode = folder.stat().st_mode
            os.chmod(folder, mode | 0o001)
            print(f"devstack: allowed the postgres user to pass through {folder}")


def is_initialised() -> bool:
    return (DATA_DIR / "PG_VERSION").exists()


def initialise() -> None:
    if is_initialised():
        return
    if not (PG_BIN / "initdb").exists():
        raise ClusterError(
            f"no PostgreSQL 15 server at {PG_BIN} (install postgresql-15, or run "
            "scripts/bootstrap.sh)"
        )
    CLUSTER_DIR.mkdir(parents=True, exist_ok=True)
    SOCKET_DIR.mkdir(exist_ok=True)
    _let_owner_reach(CLUSTER_DIR)
    pwfile = CLUSTER_DIR / "pwfile"
    pwfile.write_text("postgres\n")
    _give_to_owner(CLUSTER_DIR)
    result = _run_as_owner(
        [
            str(PG_BIN / "initdb"),
            "--pgdata",
            str(DATA_DIR),
            "--username",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local",
            "trust",
            "--auth-host",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
        ]
    )
    pwfile.unlink()
    if result.returncode != 0:
        shutil.rmtree(DATA_DIR, ignore_errors=True)
        raise ClusterError(f"initdb failed:\n{result.stdout}{result.stderr}")
    with (DATA_DIR / "postgresql.conf").open("a") as conf:
        conf.write("\n# utter development cluster\n")
    add_missing_settings()


def add_missing_settings() -> list[str]:
    """Appends the SERVER_SETTINGS a cluster's configuration lacks (one made before a
    setting was added); they take effect at the next server start."""
    conf_path = DATA_DIR / "postgresql.conf"
    present = {
        line.split("=", 1)[0].strip()
        for line in conf_path.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    missing = [key for key in SERVER_SETTINGS if key not in present]
    if missing:
        with conf_path.open("a") as conf:
            for key in missing:
                conf.write(f"{key} = {SERVER_SETTINGS[key]}\n")
    return missing


def is_running() -> bool:
    if not is_initialised():
        return False
    return _run_as_owner([str(PG_BIN / "pg_ctl"), "status", "-D", str(DATA_DIR)]).returncode == 0


def running_port() -> int | None:
    pid_file = DATA_DIR / "postmaster.pid"
    if not is_running() or not pid_file.exists():
        return None
    lines = pid_file.read_text().splitlines()
    return int(lines[3]) if len(lines) > 3 else None


def start() -> str:
    """Start the cluster (initialising it first); reuse it when already up."""
    initialise()
    port = local_port()
    added = add_missing_settings()
    if is_running():
        current = running_port()
        if current != port:
            raise ClusterError(
                f"the project cluster already runs on port {current}, not {port}; "
                "stop it first (make db-stop)"
            )
        if not added:
            return f"reused the running cluster on 127.0.0.1:{port}"
        stop()  # new server settings (e.g. a preloaded library) need a restart
    SOCKET_DIR.mkdir(exist_ok=True)
    _give_to_owner(SOCKET_DIR)
    result = _run_as_owner(
        [
            str(PG_BIN / "pg_ctl"),
            "start",
            "-D",
            str(DATA_DIR),
            "-l",
            str(LOG_FILE),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} -k {SOCKET_DIR}",
        ]
    )
    if result.returncode != 0:
        tail = LOG_FILE.read_text().splitlines()[-15:] if LOG_FILE.exists() else []
        raise ClusterError(
            f"could not start PostgreSQL on 127.0.0.1:{port}:\n"
            + result.stdout
            + result.stderr
            + "\n".join(tail)
        )
    return f"started the cluster on 127.0.0.1:{port} (data in {DATA_DIR})"


def stop(mode: str = "fast") -> str:
    if not is_running():
        return "the cluster is not running"
    result = _run_as_owner(
        [str(PG_BIN / "pg_ctl"), "stop", "-D", str(DATA_DIR), "-m", mode, "-w", "-t", "60"]
    )
    if result.returncode != 0:
        raise ClusterError(f"could not stop the cluster:\n{result.stdout}{result.stderr}")
    return "stopped the cluster"


def wait_until_accepting(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(local_port())],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    raise ClusterError(f"PostgreSQL did not accept connections within {timeout:.0f}s")
