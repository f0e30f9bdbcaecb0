"""Engine errors, timeouts and malformed messages: retries with backoff, a dead
letter in pgmq's archive, and reasons a user can read."""

from __future__ import annotations

import asyncio
from typing import Any

from gpu.engine import PermanentEngineError, RetryableEngineError
from tests.listener.conftest import Admin, RunListener, ready_voice, until
from tests.listener.scripted_engine import ScriptedEngine, fail_times


async def test_transient_errors_are_retried_until_success(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(fail_times(2, RetryableEngineError("GPU busy")))
    async with run_listener(engine) as listener:
        preview_id = user.design_preview()
        await admin.wait_until(
            "select status = 'completed' from design_previews where id = %s", (preview_id,)
        )
    task = admin.task_of("design_preview_id", preview_id)
    assert (task["status"], task["attempts"], task["error"]) == ("completed", 3, None)
    assert listener.metrics.counts["retried"] == 2
    assert user.select("select credits from profiles")[0]["credits"] == 99


async def test_retries_stop_at_the_limit_and_refund_once(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(lambda task_id, calls: RetryableEngineError("GPU busy"))
    async with run_listener(engine):
        preview_id = user.design_preview()
        await admin.wait_until(
            "select status = 'failed' from design_previews where id = %s", (preview_id,)
        )
    task = admin.task_of("design_preview_id", preview_id)
    assert task["attempts"] == 3
    assert task["error"] == "GPU busy (gave up after 3 attempts)"
    assert engine.calls[str(task["id"])] == 3
    assert user.select("select credits from profiles")[0]["credits"] == 100
    assert (
        admin.value(
            "select count(*) from private.credit_ledger where task_id = %s and reason = 'refund'",
            (task["id"],),
        )
        == 1
    )
    # Dead letter: the message is kept in the archive, not in the queue.
    assert admin.value("select count(*) from pgmq.q_design_preview") == 0
    assert (
        admin.value(
            "select count(*) from pgmq.a_design_preview where message->>'task_id' = %s",
            (str(task["id"]),),
        )
        == 1
    )


async def test_permanent_errors_fail_at_once_with_the_reason(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(
        lambda task_id, calls: PermanentEngineError("text contains no speakable characters")
    )
    async with run_listener(engine):
        preview_id = user.design_preview()
        await admin.wait_until(
            "select status = 'failed' from design_previews where id = %s", (preview_id,)
        )
    preview = user.select("select status, error from design_previews")[0]
    assert preview == {"status": "failed", "error": "text contains no speakable characters"}
    assert admin.task_of("design_preview_id", preview_id)["attempts"] == 1


async def test_engine_timeouts_are_errors_not_hangs(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(lambda task_id, calls: float("inf"))
    async with run_listener(engine, job_timeout_seconds=0.3, max_attempts=2):
        preview_id = user.design_preview()
        await admin.wait_until(
            "select status = 'failed' from design_previews where id = %s", (preview_id,)
        )
    task = admin.task_of("design_preview_id", preview_id)
    assert task["error"] == "the engine took longer than 0.3s (gave up after 2 attempts)"
    assert len(engine.cancelled) == 2  # each timed-out call was stopped, not abandoned


async def test_malformed_messages_are_dead_lettered_and_work_goes_on(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    admin.rows("select pgmq.send('generate', '{\"no\": \"task id\"}')")
    admin.rows("select pgmq.send('generate', '\"just a string\"')")
    admin.rows("select pgmq.send('generate', jsonb_build_object('task_id', gen_random_uuid()))")
    async with run_listener() as listener:
        voice_id = await ready_voice(admin, user)
        generation_id = user.generate(voice_id)
        await admin.wait_until(
            "select status = 'completed' from generations where id = %s", (generation_id,)
        )
        await admin.wait_until("select count(*) = 0 from pgmq.q_generate")
    assert listener.metrics.counts["malformed"] == 2
    assert listener.metrics.counts["claim_missing"] == 1
    assert admin.value("select count(*) from pgmq.a_generate") == 4


async def test_a_failed_upload_is_retried_not_lost(admin: Admin, run_listener: RunListener) -> None:
    user = admin.new_user()
    async with run_listener() as listener:
        real_put = listener.store.put
        failures = []

        async def flaky_put(*args: Any, **kwargs: Any) -> None:
            if not failures:
                failures.append(args)
                raise ConnectionError("storage unavailable")
            await real_put(*args, **kwargs)

        listener.store.put = flaky_put  # type: ignore[method-assign]
        preview_id = user.design_preview()
        await admin.wait_until(
            "select status = 'completed' from design_previews where id = %s", (preview_id,)
        )
    task = admin.task_of("design_preview_id", preview_id)
    assert (len(failures), task["attempts"]) == (1, 2)


async def test_a_listener_whose_claim_was_taken_over_stops_and_leaves_the_message(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    engine = ScriptedEngine(lambda task_id, calls: float("inf"))
    async with run_listener(engine, visibility_timeout_seconds=3) as listener:
        preview_id = user.design_preview()
        await asyncio.wait_for(engine.started.wait(), 5)
        task = admin.task_of("design_preview_id", preview_id)
        # What a second listener's claim does once this one's visibility lapsed.
        admin.rows("update tasks set claimed_by = 'another-listener' where id = %s", (task["id"],))
        await until(lambda: str(task["id"]) not in listener.running)  # the next heartbeat notices
        assert str(task["id"]) in engine.cancelled
    assert (
        admin.value(
            "select count(*) from pgmq.q_design_preview where msg_id = %s", (task["msg_id"],)
        )
        == 1
    )
    assert admin.value("select count(*) from pgmq.a_design_preview") == 0
    assert admin.task_of("design_preview_id", preview_id)["status"] == "processing"


class NotANumberProgress(ScriptedEngine):
    """Reports a NaN progress, then takes long enough for several heartbeats."""

    async def design(self, request: Any, job: Any) -> Any:
        await job.on_progress(float("nan"))
        await asyncio.sleep(0.6)
        return await super().design(request, job)


async def test_a_nan_progress_from_an_engine_is_ignored_and_heartbeats_go_on(
    admin: Admin, run_listener: RunListener, caplog: Any
) -> None:
    user = admin.new_user()
    async with run_listener(NotANumberProgress(), visibility_timeout_seconds=3):
        preview_id = user.design_preview()
        await admin.wait_until(
            "select status = 'completed' from design_previews where id = %s", (preview_id,)
        )
    assert "heartbeats stopped" not in caplog.text
    assert admin.task_of("design_preview_id", preview_id)["attempts"] == 1
