"""Migrations go through the real Supabase CLI (npm `supabase`, pinned in
package.json); we never apply them ourselves."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from devstack.settings import ROOT

CLI = ROOT / "node_modules" / ".bin" / "supabase"
MIGRATIONS_DIR = ROOT / "supabase" / "migrations"


class MigrationError(RuntimeError):
    pass


def cli_url(url: str) -> str:
    """The CLI insists on TLS unless told otherwise, and a local server has none. It
    also takes 127.0.0.1 on its own database port for the Docker stack it would have
    started, so a loopback address is spelled `localhost`, which it treats as any
    other server."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.hostname in {"127.0.0.1", "localhost", "::1"}:
        query.setdefault("sslmode", "disable")
        netloc = parts.netloc.rsplit("@", 1)
        host_port = netloc[-1].replace("127.0.0.1", "localhost").replace("[::1]", "localhost")
        parts = parts._replace(netloc="@".join([*netloc[:-1], host_port]))
    return urlunsplit(parts._replace(query=urlencode(query)))


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_cli(*args: str, url: str) -> str:
    if not CLI.exists():
        raise MigrationError(f"Supabase CLI not installed at {CLI}; run scripts/bootstrap.sh")
    result = subprocess.run(
        [str(CLI), *args, "--db-url", cli_url(url), "--workdir", str(ROOT), "--yes"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise MigrationError(f"supabase {' '.join(args)} failed:\n{output}")
    return output


def push(url: str) -> str:
    return run_cli("db", "push", "--include-all", url=url)


def first_version() -> str:
    return sorted(MIGRATIONS_DIR.glob("*.sql"))[0].name.split("_", 1)[0]


def reset(url: str, *, then_before_rest: Callable[[], None] | None = None) -> str:
    """A clean slate through the CLI. The CLI's remote reset drops every schema it
    did not create, our platform shim included, so on a plain PostgreSQL it resets to
    the first migration (which needs no platform), lets the caller re-apply the shim,
    then pushes the rest."""
    if then_before_rest is None:
        return run_cli("db", "reset", url=url)
    out = run_cli("db", "reset", "--version", first_version(), url=url)
    then_before_rest()
    return out + "\n" + push(url)


def lint(url: str) -> str:
    # Our schemas only: pgTAP, which the test databases hold, does not lint clean.
    return run_cli(
        "db",
        "lint",
        "--schema",
        "public,private,worker,billing",
        "--level",
        "warning",
        "--fail-on",
        "warning",
        url=url,
    )
