"""PgBouncer (Debian's `pgbouncer`) in front of a test database, in session or
transaction mode, on a free 127.0.0.1 port: the stand-in for Supabase's Supavisor
pooler, whose session mode (port 5432) keeps a server session per client and whose
transaction mode (port 6543) hands each transaction to any free server session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from devstack.settings import LOCAL_DIR
from tests.test_devstack import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@contextmanager
def pgbouncer(database_url: str, pool_mode: str) -> Iterator[str]:
    """Yields `database_url` rewritten to go through a pooler in `pool_mode`."""
    parts = urlsplit(database_url)
    assert parts.hostname and parts.port and parts.username and parts.password
    dbname = parts.path.lstrip("/")
    port = free_port()
    LOCAL_DIR.mkdir(exist_ok=True)
    # PgBouncer will not run as root: it runs as `postgres`, which must read its files.
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=LOCAL_DIR))
    folder.chmod(0o755)
    (folder / "users.txt").write_text(f'"{parts.username}" "{parts.password}"\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{dbname} = host={parts.hostname} port={parts.port} dbname={dbname}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = plain\nauth_file = {folder / 'users.txt'}\n"
        f"pool_mode = {pool_mode}\ndefault_pool_size = 10\n"
        "server_reset_query = DISCARD ALL\n"
    )
    for file in folder.iterdir():
        file.chmod(0o644)
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pooled = urlunsplit(
        parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}")
    )
    try:
        _wait_until_accepting(pooled, process)
        yield pooled
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_accepting(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            assert process.stderr is not None
            raise RuntimeError(f"pgbouncer exited: {process.stderr.read().decode()}")
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("select 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
