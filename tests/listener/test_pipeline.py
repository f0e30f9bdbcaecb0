"""Happy paths end to end: a user's insert becomes completed rows, stored audio and
the broadcasts the browser receives."""

from __future__ import annotations

import io
import wave
from pathlib import Path

from tests.listener.conftest import Admin, RunListener, ready_voice


def stored_audio(root: Path, bucket: str, key: str) -> wave.Wave_read:
    return wave.open(io.BytesIO((root / bucket / key).read_bytes()))


async def test_design_preview_then_generation_complete_with_audio(
    admin: Admin, run_listener: RunListener, listener_settings
) -> None:
    user = admin.new_user()
    async with run_listener():
        voice_id = await ready_voice(admin, user)
        generation_id = user.generate(voice_id, "x" * 501)  # two credits
        await admin.wait_until(
            "select status = 'completed' from generations where id = %s", (generation_id,)
        )

    generation = user.select("select * from generations where id = %(id)s", {"id": generation_id})[
        0
    ]
    assert generation["audio_object_key"] == f"{user.user_id}/{generation_id}.wav"
    assert generation["duration_seconds"] > 0 and generation["generation_seconds"] is not None
    with stored_audio(
        listener_settings.storage_dir, "generations", generation["audio_object_key"]
    ) as audio:
        assert (audio.getnchannels(), audio.getsampwidth()) == (1, 2)
        assert audio.getnframes() > 0

    # The user can see the stored object through the Storage policies.
    names = user.select("select name from storage.objects where bucket_id = 'generations'")
    assert names == [{"name": generation["audio_object_key"]}]
    task = admin.task_of("generation_id", generation_id)
    assert (task["status"], task["attempts"], task["progress"], task["cost"]) == (
        "completed",
        1,
        1.0,
        2,
    )
    assert user.select("select credits from profiles")[0]["credits"] == 100 - 1 - 2
    # The message went to the archive, not back to the queue.
    assert admin.value("select count(*) from pgmq.q_generate") == 0
    assert (
        admin.value(
            "select count(*) from pgmq.a_generate where message->>'task_id' = %s",
            (str(task["id"]),),
        )
        == 1
    )


async def test_every_status_change_is_broadcast_in_order(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    async with run_listener():
        preview_id = user.design_preview()
        await admin.wait_until(
            "select status = 'completed' from design_previews where id = %s", (preview_id,)
        )

    topic = f"user:{user.user_id}"
    statuses = [
        row["status"]
        for row in admin.rows(
            "select payload #>> '{record,status}' as status from realtime.messages "
            "where topic = %s and payload->>'table' = 'tasks' order by inserted_at, id",
            (topic,),
        )
    ]
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    assert statuses.count("completed") == 1 and "processing" in statuses
    # The preview's own changes of status ride in its task's messages, once each.
    previews = admin.rows(
        "select payload #> '{subject,record}' as record from realtime.messages "
        "where topic = %s and payload->>'table' = 'tasks' and payload #>> '{subject,table}' = "
        "'design_previews' order by inserted_at, id",
        (topic,),
    )
    assert [p["record"]["status"] for p in previews] == statuses
    assert previews[-1]["record"]["audio_object_key"].endswith(f"/previews/{preview_id}.wav")
    assert not admin.rows(
        "select 1 from realtime.messages where topic = %s and payload->>'table' = 'design_previews'",
        (topic,),
    )
    # The user's own topic only, private, and nothing internal in the task payload.
    assert admin.value("select bool_and(private) from realtime.messages") is True
    task_payload = admin.rows(
        "select payload->'record' as record from realtime.messages where payload->>'table' = 'tasks' limit 1"
    )[0]["record"]
    assert not {"msg_id", "engine_call_id", "claimed_by", "user_id"} & set(task_payload)


async def test_pickup_is_push_driven_not_polled(admin: Admin, run_listener: RunListener) -> None:
    """With a 30 s safety-net poll, work still starts at once: NOTIFY woke the listener."""
    user = admin.new_user()
    async with run_listener(poll_interval_seconds=30.0) as listener:
        preview_id = user.design_preview()
        await admin.wait_until(
            "select status = 'completed' from design_previews where id = %s",
            (preview_id,),
            within=5,
        )
        assert listener.metrics.pickup_ms[-1] < 5000
