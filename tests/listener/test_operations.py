"""Running the listener: bad configuration stops it at start with the setting's name;
its health and metrics are served while it works."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.settings import ROOT
from listener.metrics import serve_http
from listener.storage import LocalObjectStore
from tests.listener.conftest import Admin, RunListener


def listener_with(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "listener"],
        cwd=ROOT,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_settings_stop_the_listener_naming_the_setting() -> None:
    result = listener_with(UTTER_MAX_ATTEMPTS="0", UTTER_ENGINE="tone")
    assert result.returncode == 2
    assert "UTTER_MAX_ATTEMPTS: Input should be greater than 0 (got '0')" in result.stderr

    result = listener_with(UTTER_ENGINE="whisper")
    assert result.returncode == 2
    assert (
        "UTTER_ENGINE: Value error, must be one of auto, espeak, modal, qwen-local, tone"
        in result.stderr
    )

    result = listener_with(UTTER_ENGINE="tone", UTTER_TRANSCRIBER="whisper")
    assert result.returncode == 2
    assert (
        "UTTER_TRANSCRIBER: Value error, must be one of auto, modal, none, qwen-local"
        in result.stderr
    )

    result = listener_with(UTTER_ENGINE="tone", UTTER_STORAGE="supabase")
    assert result.returncode == 2
    assert (
        "UTTER_STORAGE=supabase needs UTTER_SUPABASE_URL and UTTER_SUPABASE_SERVICE_ROLE_KEY"
        in result.stderr
    )


async def http_get(port: int, path: str) -> tuple[str, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return head.splitlines()[0], json.loads(body)


async def test_health_and_metrics_are_served(admin: Admin, run_listener: RunListener) -> None:
    user = admin.new_user()
    async with run_listener() as listener:
        user.design_preview()
        await admin.wait_until("select count(*) = 1 from tasks where status = 'completed'")

        async def depths() -> list[dict[str, object]]:
            return await listener.db.fetch("queue_metrics")

        server = await serve_http(0, listener.metrics, depths)
        port = server.sockets[0].getsockname()[1]
        try:
            status, health = await http_get(port, "/healthz")
            assert (status, health) == ("HTTP/1.1 200 OK", {"ok": True})
            status, metrics = await http_get(port, "/metrics")
            assert status == "HTTP/1.1 200 OK"
            assert metrics["counts"] == {"completed": 1}
            queues = {q["queue"]: q for q in metrics["queues"]}  # type: ignore[union-attr]
            assert set(queues) == {
                "generate",
                "design_preview",
                "clone",
                "transcribe",
                "storage_cleanup",
            }
            assert queues["design_preview"]["total_sent"] == 1
        finally:
            server.close()


def test_the_local_store_keeps_keys_inside_their_bucket(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, database=None)  # type: ignore[arg-type]
    assert (
        store.path("generations", "u1/g1.wav")
        == tmp_path.resolve() / "generations" / "u1" / "g1.wav"
    )
    for bucket, key in [
        ("generations", "../references/u1/x.wav"),
        ("generations", "/etc/passwd"),
        ("../etc", "passwd"),
        ("generations", ""),
    ]:
        with pytest.raises(ValueError, match="leaves bucket"):
            store.path(bucket, key)
