"""`python -m relay` and `python -m relay watch` as a developer runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg

from relay.server import RelayServer
from tests.relay.support import SECRET, WAIT_S, new_user, send_messages, without_id

ROOT = Path(__file__).resolve().parents[2]


def _env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "UTTER_JWT_SECRET": SECRET,
        "UTTER_RELAY_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }


@asynccontextmanager
async def running(*args: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def read_line(stream: asyncio.StreamReader | None, pattern: str) -> re.Match[str]:
    assert stream is not None
    async with asyncio.timeout(WAIT_S):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the process ended before printing {pattern!r}")
            if match := re.search(pattern, line):
                return match


async def test_python_m_relay_serves_and_stops(relay_database_url: str) -> None:
    async with running(env=_env(relay_database_url)) as process:
        match = await read_line(
            process.stdout, r"relay listening on ws://127\.0\.0\.1:(\d+)/realtime/v1/websocket"
        )
        port = int(match.group(1))

        def health() -> dict[str, object]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                return dict(json.loads(response.read()))

        assert (await asyncio.to_thread(health))["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def test_watch_prints_a_users_messages(relay: RelayServer, relay_database_url: str) -> None:
    user = new_user()
    email = f"watch-{user.id}@example.com"
    with psycopg.connect(relay_database_url, autocommit=True) as conn:
        conn.execute("insert into auth.users (id, email) values (%s, %s)", (user.id, email))
    for who in (["--user-id", str(user.id)], ["--email", email]):
        args = ["watch", *who, "--url", relay.http_url]
        async with running(*args, env=_env(relay_database_url)) as process:
            await read_line(process.stderr, rf"# {user.topic} SUBSCRIBED")
            await send_messages(relay_database_url, user.topic, [("UPDATE", {"status": "running"})])
            line = await read_line(process.stdout, r"^(\S+) (\S+) (.*)$")
            moment, event, payload = line.groups()
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", moment)
            assert (event, without_id(json.loads(payload))) == ("UPDATE", {"status": "running"})
