"""Where the database is. `DATABASE_URL` overrides everything, a real Supabase
database included; otherwise the project's own cluster on 127.0.0.1."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = ROOT / ".local"
DEFAULT_PORT = 54322  # the Supabase CLI's local database port


@dataclass(frozen=True)
class Target:
    url: str
    from_env: bool

    @property
    def redacted(self) -> str:
        return redact(self.url)


def local_port() -> int:
    raw = os.environ.get("UTTER_DB_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"UTTER_DB_PORT must be a port number, got {raw!r}") from None
    if not 1024 <= port <= 65535:
        raise SystemExit(f"UTTER_DB_PORT must be between 1024 and 65535, got {port}")
    return port


def local_url(dbname: str = "postgres") -> str:
    return f"postgresql://postgres:postgres@127.0.0.1:{local_port()}/{dbname}"


def worker_url(database_url: str) -> str:
    """The same database as the listener's least-privileged role, with the local
    development password (see devstack.platform.ensure_local_worker_login)."""
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"utter_worker:utter_worker@{host}"))


def billing_url(database_url: str) -> str:
    """The same database as the webhook receiver's least-privileged role, with the
    local development password (see devstack.platform.ensure_local_worker_login)."""
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"utter_billing:utter_billing@{host}"))


def target() -> Target:
    env = os.environ.get("DATABASE_URL", "").strip()
    if env:
        return Target(env, from_env=True)
    return Target(local_url(), from_env=False)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_dbname(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{dbname}"))
