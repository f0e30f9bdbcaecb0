"""The listener as a real process: kill -9 mid-job (again and again), SIGTERM with a
grace period, and a database restart under running jobs. Every task still ends once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from devstack import cluster
from devstack.processes import spawn_listener
from tests.listener.conftest import Admin, RunListener, ready_voice
from tests.listener.scripted_engine import ScriptedEngine


def start_listener(database_url: str, storage: Path, **env: str) -> subprocess.Popen[bytes]:
    """Slow enough jobs (a second each) for a signal to land mid-job."""
    settings = {
        "UTTER_TONE_DELAY_SECONDS": "1.0",
        "UTTER_VISIBILITY_TIMEOUT_SECONDS": "3",
        "UTTER_POLL_INTERVAL_SECONDS": "0.5",
        "UTTER_CONCURRENCY_DESIGN_PREVIEW": "3",
        "UTTER_MAX_ATTEMPTS": "10",
        "UTTER_SHUTDOWN_GRACE_SECONDS": "5",
    }
    return spawn_listener(database_url, storage, **(settings | env))


def ended_once(admin: Admin) -> bool:
    return bool(
        admin.value(
            "select count(distinct payload #>> '{record,id}') = count(*) from realtime.messages "
            "where payload->>'table' = 'tasks' "
            "and payload #>> '{record,status}' in ('completed', 'failed', 'cancelled')"
        )
    )


async def test_kill_nine_mid_job_repeatedly_still_ends_every_task_once(
    admin: Admin, fresh_database_url: str, tmp_path: Path
) -> None:
    user = admin.new_user()
    previews = [user.design_preview(text=f"Line {n}") for n in range(9)]
    for _ in range(4):
        process = start_listener(fresh_database_url, tmp_path)
        await admin.wait_until(
            "select count(*) > 0 from tasks where status = 'processing'", within=20
        )
        await asyncio.sleep(0.4)  # mid-job: the tone engine takes a second
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    process = start_listener(fresh_database_url, tmp_path)
    try:
        await admin.wait_until(
            "select count(*) = 9 from tasks where status = 'completed'", within=90
        )
    finally:
        process.terminate()
        assert process.wait(20) == 0
    assert ended_once(admin)
    assert admin.value("select count(*) from storage.objects where bucket_id = 'references'") == 9
    for preview_id in previews:
        row = admin.rows(
            "select user_id, audio_object_key from design_previews where id = %s", (preview_id,)
        )[0]
        assert (tmp_path / "references" / row["audio_object_key"]).exists()
    assert (
        admin.value("select max(attempts) > 1 from tasks") is True
    )  # the kills did interrupt work
    assert user.select("select credits from profiles")[0]["credits"] == 100 - 9


async def test_sigterm_hands_running_work_back_and_exits_zero(
    admin: Admin, fresh_database_url: str, tmp_path: Path
) -> None:
    user = admin.new_user()
    preview_id = user.design_preview()
    process = start_listener(
        fresh_database_url,
        tmp_path,
        UTTER_TONE_DELAY_SECONDS="30",
        UTTER_SHUTDOWN_GRACE_SECONDS="0.5",
        UTTER_VISIBILITY_TIMEOUT_SECONDS="60",
    )
    await admin.wait_until("select count(*) = 1 from tasks where status = 'processing'", within=20)
    stopped = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert time.monotonic() - stopped < 10
    task = admin.task_of("design_preview_id", preview_id)
    assert (task["status"], task["attempts"], task["claimed_by"]) == ("pending", 0, None)
    # Visible again at once, not after the 60 s visibility timeout.
    assert admin.value("select vt <= now() from pgmq.q_design_preview") is True


async def test_sigterm_lets_short_jobs_finish_within_the_grace_period(
    admin: Admin, fresh_database_url: str, tmp_path: Path
) -> None:
    user = admin.new_user()
    preview_id = user.design_preview()
    process = start_listener(fresh_database_url, tmp_path, UTTER_TONE_DELAY_SECONDS="1")
    await admin.wait_until("select count(*) = 1 from tasks where status = 'processing'", within=20)
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert admin.task_of("design_preview_id", preview_id)["status"] == "completed"


async def test_database_restart_while_jobs_run_loses_nothing(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(lambda task_id, calls: 1.5)
    async with run_listener(engine, concurrency_design_preview=3) as listener:
        for n in range(6):
            user.design_preview(text=f"Line {n}")
        await asyncio.wait_for(engine.started.wait(), 10)
        await asyncio.to_thread(cluster.stop, "fast")
        await asyncio.to_thread(cluster.start)
        await admin.wait_until(
            "select count(*) = 6 from tasks where status = 'completed'", within=90
        )
        assert listener.metrics.listening  # the LISTEN connection came back
    assert ended_once(admin)
    assert user.select("select credits from profiles")[0]["credits"] == 100 - 6


async def test_a_heartbeat_that_loses_its_cancel_still_lets_the_job_finish(
    admin: Admin, run_listener: RunListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel can be lost on the way: on Python 3.11 asyncio.wait_for, which
    psycopg_pool waits for a connection with, swallows one that races the connection
    it waited for. Seen under CPU load right after a database restart: the job's
    heartbeats carried on for ever and the job never settled."""
    user = admin.new_user()
    engine = ScriptedEngine(lambda task_id, calls: float("inf"))
    async with run_listener(engine) as listener:
        real_value = listener.db.value
        heartbeat_waiting = asyncio.Event()

        async def value_losing_its_cancel(name: str, **params: Any) -> Any:
            if name == "heartbeat":
                heartbeat_waiting.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(3600)  # the checkout the cancel lands in
            return await real_value(name, **params)

        monkeypatch.setattr(listener.db, "value", value_losing_its_cancel)
        preview_id = user.design_preview(text="One line.")
        await asyncio.wait_for(heartbeat_waiting.wait(), 30)
        engine.release.set()
        await admin.wait_until(
            "select status = 'completed' from tasks where design_preview_id = %s",
            (preview_id,),
            within=30,
        )


STREAMED_TEXT = " ".join(
    f"Sentence {n} of a generation long enough to be spoken in several chunks." for n in range(12)
)


@pytest.mark.parametrize("fault", ["kill", "freeze"])
async def test_a_listener_killed_or_frozen_mid_stream_leaves_only_the_final_file(
    admin: Admin, fresh_database_url: str, tmp_path: Path, fault: str
) -> None:
    """Segments stored by a listener that dies (kill -9) or lapses (frozen past the
    visibility timeout, then woken to store and announce late) while another
    listener finishes the generation: afterwards the generation's folder holds its
    final file and nothing else, on disk and in storage.objects."""
    storage = tmp_path / "storage"
    user = admin.new_user()
    first = start_listener(fresh_database_url, storage, UTTER_TONE_DELAY_SECONDS="8")
    second: subprocess.Popen[bytes] | None = None
    try:
        voice_id = await ready_voice(admin, user)
        generation_id = user.generate(voice_id, STREAMED_TEXT)
        await admin.wait_until(
            "select count(*) > 0 from generation_segments where generation_id = %s",
            (generation_id,),
            within=30,
        )
        if fault == "kill":
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        else:
            first.send_signal(signal.SIGSTOP)
        second = start_listener(fresh_database_url, storage, UTTER_TONE_DELAY_SECONDS="0.5")
        key = await admin.wait_until(
            "select audio_object_key from generations where id = %s and status = 'completed'",
            (generation_id,),
            within=60,
        )
        if fault == "freeze":
            first.send_signal(signal.SIGCONT)
            # Its engine renders on and its late segments land after completion.
            await asyncio.sleep(10)
        await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup", within=30)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
                process.wait(30)

    folder = key.rsplit("/", 1)[0]
    on_disk = {
        path.relative_to(storage / "generations").as_posix()
        for path in (storage / "generations").rglob("*")
        if path.is_file()
    }
    rows = {
        row["name"]
        for row in admin.rows(
            "select name from storage.objects where bucket_id = 'generations' and name like %s",
            (folder + "/%",),
        )
    }
    assert on_disk == rows == {key}
    assert (
        admin.value(
            "select count(*) from generation_segments where generation_id = %s", (generation_id,)
        )
        == 0
    )
    assert ended_once(admin)
