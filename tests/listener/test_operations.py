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
from prometheus_client.parser import text_string_to_metric_families

from devstack.settings import ROOT
from gpu.engine import RetryableEngineError
from listener.metrics import serve_http
from listener.storage import LocalObjectStore
from tests.listener.conftest import Admin, RunListener
from tests.listener.scripted_engine import ScriptedEngine, fail_times


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


async def http_get(port: int, path: str) -> tuple[str, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status, *header_lines = head.splitlines()
    headers = dict(line.split(": ", 1) for line in header_lines)
    return status, headers, body


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, parsed by prometheus_client's own
    parser (which refuses malformed text), keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


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
            status, _, health = await http_get(port, "/healthz")
            assert (status, json.loads(health)) == ("HTTP/1.1 200 OK", {"ok": True})
            status, headers, exposition = await http_get(port, "/metrics")
        finally:
            server.close()

    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"].startswith("text/plain; version=")
    found = samples(exposition)
    engine = listener.handlers.engine.name

    def value(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert value("utter_listener_listening") == 1
    assert value("utter_job_outcomes_total", type="design_preview", outcome="completed") >= 1
    assert value("utter_job_duration_seconds_count", type="design_preview", engine=engine) >= 1
    assert value("utter_job_pickup_seconds_count", type="design_preview", engine=engine) >= 1
    assert value("utter_gpu_seconds_total", type="design_preview", engine=engine) > 0
    queues = {"generate", "design_preview", "clone", "storage_cleanup"}
    for queue in queues:
        assert ("utter_queue_messages", frozenset({("queue", queue)})) in found
        assert ("utter_queue_oldest_message_age_seconds", frozenset({("queue", queue)})) in found
    assert value("utter_jobs_in_flight", queue="design_preview") in (0, 1)
    # What the listener recorded for the budgets is what it exported.
    recorded = admin.value("select sum(gpu_seconds)::float from private.task_usage")
    assert recorded == pytest.approx(
        value("utter_gpu_seconds_total", type="design_preview", engine=engine), abs=0.01
    )
    assert admin.value("select engine from private.task_usage limit 1") == engine


async def test_retries_are_counted_by_type(admin: Admin, run_listener: RunListener) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(fail_times(1, RetryableEngineError("GPU busy")))
    async with run_listener(engine=engine) as listener:
        user.design_preview()
        await admin.wait_until("select count(*) = 1 from tasks where status = 'completed'")
    found = samples(listener.metrics.prometheus_text().decode())
    assert found[("utter_job_retries_total", frozenset({("type", "design_preview")}))] == 1
    assert (
        found[
            (
                "utter_job_outcomes_total",
                frozenset({("type", "design_preview"), ("outcome", "retried")}),
            )
        ]
        == 1
    )


def test_the_local_store_keeps_keys_inside_their_bucket(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, storage_database_url="")
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
