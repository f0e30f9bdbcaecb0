"""Cancellation: while queued, while running (the engine stops within a second), when
the subject is deleted, and racing completion. The database refunds; the listener
leaves no audio behind."""

from __future__ import annotations

import asyncio
import random
import uuid

from tests.listener.conftest import Admin, Browser, RunListener, ready_voice, until
from tests.listener.scripted_engine import ScriptedEngine


async def test_cancel_while_running_stops_the_engine_within_a_second(
    admin: Admin, run_listener: RunListener, listener_settings
) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(lambda task_id, calls: float("inf"))
    async with run_listener(engine):
        preview_id = user.design_preview()
        await asyncio.wait_for(engine.started.wait(), 5)
        task = admin.task_of("design_preview_id", preview_id)
        assert task["status"] == "processing"
        assert user.cancel(task["id"]) == 1
        stopped_after = await until(lambda: str(task["id"]) in engine.cancelled)
        assert stopped_after < 1.0
        await admin.wait_until("select count(*) = 0 from pgmq.q_design_preview")
    task = admin.task_of("design_preview_id", preview_id)
    assert (task["status"], task["error"]) == ("cancelled", "cancelled by the user")
    assert user.select("select status from design_previews") == [{"status": "cancelled"}]
    assert user.select("select credits from profiles")[0]["credits"] == 100
    assert admin.value("select count(*) from pgmq.a_design_preview") == 1
    assert not list((listener_settings.storage_dir).rglob("*.wav"))


async def test_cancel_while_queued_means_the_engine_never_runs(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    preview_id = user.design_preview()
    task = admin.task_of("design_preview_id", preview_id)
    assert user.cancel(task["id"]) == 1
    assert admin.value("select count(*) from pgmq.q_design_preview") == 0
    engine = ScriptedEngine()
    async with run_listener(engine):
        await asyncio.sleep(0.5)
    assert engine.calls == {}
    assert admin.task_of("design_preview_id", preview_id)["status"] == "cancelled"


async def test_deleting_a_generation_while_it_runs_cancels_and_cleans_up(
    admin: Admin, run_listener: RunListener, listener_settings
) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(
        lambda task_id, calls: float("inf") if calls == 0 and task_id in hang else None
    )
    hang: set[str] = set()
    async with run_listener(engine):
        voice_id = await ready_voice(admin, user)
        generation_id = user.generate(voice_id)
        task_id = str(admin.task_of("generation_id", generation_id)["id"])
        hang.add(task_id)
        await until(lambda: engine.calls[task_id] == 1)
        user.select("delete from generations where id = %(id)s", {"id": generation_id})
        await until(lambda: task_id in engine.cancelled)
        await admin.wait_until("select count(*) = 0 from pgmq.q_generate")
        await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup")
    task = admin.rows("select status, generation_id from tasks where id = %s", (task_id,))[0]
    assert task == {"status": "cancelled", "generation_id": None}
    assert not list((listener_settings.storage_dir / "generations").rglob("*.wav"))
    assert user.select("select credits from profiles")[0]["credits"] == 100 - 1  # the preview only


async def test_cancel_racing_completion_ends_each_task_exactly_once(
    admin: Admin, run_listener: RunListener, listener_settings
) -> None:
    users = [admin.new_user() for _ in range(2)]
    rng = random.Random(7)
    engine = ScriptedEngine(lambda task_id, calls: rng.uniform(0, 0.03))
    async with run_listener(engine, concurrency_design_preview=4):
        previews: list[tuple[Browser, uuid.UUID]] = []
        for index in range(20):
            user = users[index % 2]
            previews.append((user, user.design_preview()))
        for user, preview_id in previews:
            await asyncio.sleep(rng.uniform(0, 0.02))
            task = admin.task_of("design_preview_id", preview_id)
            user.cancel(task["id"])
        await admin.wait_until(
            "select count(*) = 0 from tasks where status in ('pending', 'processing')", within=20
        )
        await admin.wait_until("select count(*) = 0 from pgmq.q_design_preview")
        await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup")
    for _, preview_id in previews:
        task = admin.task_of("design_preview_id", preview_id)
        preview = admin.rows("select * from design_previews where id = %s", (preview_id,))[0]
        stored = (
            listener_settings.storage_dir
            / "references"
            / f"{preview['user_id']}/previews/{preview_id}.wav"
        )
        refunds = admin.value(
            "select count(*) from private.credit_ledger where task_id = %s and reason = 'refund'",
            (task["id"],),
        )
        assert task["status"] in ("completed", "cancelled")
        assert preview["status"] == task["status"]
        if task["status"] == "completed":
            assert stored.exists() and refunds == 0
        else:
            assert not stored.exists() and refunds == 1
        ends = admin.value(
            "select count(*) from realtime.messages where payload->>'table' = 'tasks' "
            "and payload #>> '{record,id}' = %s and payload #>> '{record,status}' in ('completed', 'cancelled')",
            (str(task["id"]),),
        )
        assert ends == 1
    for user in users:
        credits = user.select("select credits from profiles")[0]["credits"]
        ledger = admin.value(
            "select sum(delta) from private.credit_ledger where user_id = %s", (user.user_id,)
        )
        assert credits == ledger
