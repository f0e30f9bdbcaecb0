"""One run per task per process, and no output that outlives its task, whatever order
lapsed claims, takeovers, cancels, deletes, late results and crashes come in. Each test
freezes a listener at one step of delivery (its store holds the call) and lets the rest
of the world move on; a crash is the job's task dying at that step, so nothing the
listener would have done afterwards happens."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest

from listener.storage import ObjectStore
from listener.worker import Listener
from tests.listener.conftest import Admin, RunListener, until
from tests.listener.scripted_engine import ScriptedEngine


class FreezingStore:
    """The listener's store, with a freeze before each upload of a job and a crash of
    the job's own task (not the cleanup's) when it deletes."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.frozen = asyncio.Event()  # set while an upload waits to be thawed
        self.thaw = asyncio.Event()
        self.crash_on_job_delete = False
        self.job_deletes = 0

    async def get(self, bucket: str, key: str) -> bytes:
        return await self.inner.get(bucket, key)

    async def signed_url(self, bucket: str, key: str, expires_in: int) -> str:
        return await self.inner.signed_url(bucket, key, expires_in)

    async def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str, owner: str
    ) -> None:
        self.frozen.set()
        await self.thaw.wait()
        await self.inner.put(bucket, key, data, content_type=content_type, owner=owner)

    async def close(self) -> None:
        await self.inner.close()

    async def delete(self, bucket: str, key: str) -> None:
        current = asyncio.current_task()
        if current is not None and current.get_coro().__name__ == "_execute":  # type: ignore[union-attr]
            self.job_deletes += 1
            if self.crash_on_job_delete:
                raise asyncio.CancelledError  # the process died here
        await self.inner.delete(bucket, key)


def freezing(listener: Listener) -> FreezingStore:
    store = FreezingStore(listener.store)
    listener.store = store
    return store


def stored_files(storage: Path) -> list[Path]:
    return [p for p in storage.rglob("*") if p.is_file()]


async def lapse(admin: Admin, task_id: uuid.UUID) -> None:
    """The claim's invisibility runs out, as after an outage longer than it."""
    admin.value(
        "select pgmq.set_vt(type, msg_id, 0) is not null from tasks where id = %s", (task_id,)
    )


async def test_a_lapsed_claim_read_again_by_its_own_listener_does_not_start_a_second_run(
    admin: Admin, run_listener: RunListener, caplog: pytest.LogCaptureFixture
) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(lambda task_id, calls: float("inf"))
    caplog.set_level(logging.INFO, logger="listener")
    async with run_listener(engine, worker_id="listener-a", concurrency_design_preview=2) as a:
        preview_id = user.design_preview()
        await asyncio.wait_for(engine.started.wait(), 5)
        task = admin.task_of("design_preview_id", preview_id)
        await lapse(admin, task["id"])
        a.wake["design_preview"].set()
        await until(lambda: a.metrics.counts["claim_reattached"] == 1)
        again = admin.task_of("design_preview_id", preview_id)
        assert (again["attempts"], again["claimed_by"]) == (1, "listener-a")
        assert engine.calls[str(task["id"])] == 1
        assert user.cancel(task["id"]) == 1
        await until(lambda: str(task["id"]) in engine.cancelled and not a.running)
    assert engine.cancelled == [str(task["id"])]
    assert admin.task_of("design_preview_id", preview_id)["status"] == "cancelled"
    assert "job crashed" not in caplog.text


async def test_a_late_result_for_a_deleted_subject_is_removed(
    admin: Admin, run_listener: RunListener, listener_settings
) -> None:
    """A freezes before storing; B takes over and completes; the owner deletes the
    preview and the cleanup runs; A wakes and stores its audio."""
    user = admin.new_user()
    async with run_listener(ScriptedEngine(), worker_id="listener-a") as a:
        store = freezing(a)
        preview_id = user.design_preview()
        await asyncio.wait_for(store.frozen.wait(), 5)
        task = admin.task_of("design_preview_id", preview_id)
        await lapse(admin, task["id"])
        async with run_listener(ScriptedEngine(), worker_id="listener-b"):
            await admin.wait_until(
                "select status = 'completed' from design_previews where id = %s", (preview_id,)
            )
            user.select("delete from design_previews where id = %(id)s", {"id": preview_id})
            await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup")
            assert stored_files(listener_settings.storage_dir) == []
            store.thaw.set()
            await until(lambda: not a.running)
            await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup")
    assert stored_files(listener_settings.storage_dir) == []
    assert admin.value("select count(*) from storage.objects") == 0
    assert a.metrics.counts["discarded_already_completed"] == 1


async def test_a_cancel_during_delivery_then_a_crash_keeps_no_audio(
    admin: Admin, run_listener: RunListener, listener_settings
) -> None:
    """The cancel lands and its cleanup runs while A is about to store; A stores,
    hears 'cancelled' and dies before doing anything about it."""
    user = admin.new_user()
    async with run_listener(ScriptedEngine(), worker_id="listener-a") as a:
        store = freezing(a)
        store.crash_on_job_delete = True
        preview_id = user.design_preview()
        await asyncio.wait_for(store.frozen.wait(), 5)
        task = admin.task_of("design_preview_id", preview_id)
        assert user.cancel(task["id"]) == 1
        await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup")
        store.thaw.set()
        await until(lambda: not a.running)
        await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup")
    assert stored_files(listener_settings.storage_dir) == []
    assert admin.value("select count(*) from storage.objects") == 0
    assert store.job_deletes == 0  # the database queued the removal, not the job
    assert admin.task_of("design_preview_id", preview_id)["status"] == "cancelled"
    assert user.select("select credits from profiles")[0]["credits"] == 100


async def test_a_lapsed_listener_finishing_after_the_takeover_keeps_the_live_audio(
    admin: Admin, run_listener: RunListener, listener_settings
) -> None:
    user = admin.new_user()
    async with run_listener(ScriptedEngine(), worker_id="listener-a") as a:
        store = freezing(a)
        preview_id = user.design_preview()
        await asyncio.wait_for(store.frozen.wait(), 5)
        await lapse(admin, admin.task_of("design_preview_id", preview_id)["id"])
        async with run_listener(ScriptedEngine(), worker_id="listener-b"):
            await admin.wait_until(
                "select status = 'completed' from design_previews where id = %s", (preview_id,)
            )
            store.thaw.set()
            await until(lambda: not a.running)
            await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup")
    task = admin.task_of("design_preview_id", preview_id)
    assert (task["status"], task["attempts"]) == ("completed", 2)
    key = admin.value("select audio_object_key from design_previews where id = %s", (preview_id,))
    assert stored_files(listener_settings.storage_dir) == [
        listener_settings.storage_dir / "references" / key
    ]
    assert admin.value("select count(*) from storage.objects") == 1
