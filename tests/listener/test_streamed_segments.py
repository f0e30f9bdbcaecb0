"""Streamed audio end to end: a generation's finished chunks are stored as segments
under its folder and reach the owner over Realtime (the development relay) while the
rest is still rendered; the owner, and only the owner, reads them; they are gone once
the final file is adopted or the generation is cancelled."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from gpu.audio import decode_wav
from gpu.engine import Audio
from gpu.tone_engine import ToneEngine
from listener.settings import ListenerSettings
from relay.server import serve
from relay.tokens import mint_user_token
from tests.listener.conftest import Admin, Browser, RunListener, ready_voice
from tests.relay.support import SECRET, RawClient, relay_settings

LONG_TEXT = " ".join(
    f"Sentence {n} of a generation long enough to be spoken in several chunks." for n in range(12)
)


class HeldToneEngine(ToneEngine):
    """The tone engine, holding chunk `held_at` of a text until released: the job is
    provably still running while the earlier chunks are out."""

    def __init__(self, held_at: int = 1) -> None:
        super().__init__()
        self.held_at = held_at
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.rendered: list[int] = []

    async def render_chunk(self, index: int, count: int) -> Audio:
        self.rendered.append(index)
        if index == self.held_at:
            self.held.set()
            await self.release.wait()
        return await super().render_chunk(index, count)


async def owner_channel(relay: Any, user: Browser) -> RawClient:
    client = await RawClient.connect(relay)
    _, reply = await client.join(f"user:{user.user_id}", mint_user_token(SECRET, user.user_id))
    assert reply["payload"]["status"] == "ok", reply
    return client


async def next_broadcast(client: RawClient, table: str) -> dict[str, Any]:
    """The next broadcast about `table` on the channel: its operation and record."""
    while True:
        frame = await client.receive()
        if frame["event"] == "broadcast" and frame["payload"]["payload"]["table"] == table:
            payload: dict[str, Any] = frame["payload"]["payload"]
            return payload


def segment_objects(admin: Admin, user: Browser, generation: uuid.UUID) -> int:
    return int(
        admin.value(
            "select count(*) from storage.objects where bucket_id = 'generations' and name like %s",
            (f"{user.user_id}/{generation}/segments/%",),
        )
    )


async def test_segments_reach_the_owner_over_realtime_before_the_generation_ends(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user, stranger = admin.new_user(), admin.new_user()
    engine = HeldToneEngine()
    async with serve(relay_settings(admin.url)) as relay, run_listener(engine=engine):
        voice = await ready_voice(admin, user)
        client = await owner_channel(relay, user)
        try:
            generation = user.generate(voice, LONG_TEXT)
            first = (await next_broadcast(client, "generation_segments"))["record"]
            # Chunk 1 is held in the engine: the job has not ended.
            await engine.held.wait()
            assert admin.value(
                "select status from tasks where generation_id = %s", (generation,)
            ) == ("processing")
            assert (first["generation_id"], first["segment_index"]) == (str(generation), 0)
            assert first["object_key"] == f"{user.user_id}/{generation}/segments/0.wav"
            assert "user_id" not in first
            stored = (
                listener_settings.storage_dir / "generations" / first["object_key"]
            ).read_bytes()
            assert decode_wav(stored).duration_seconds == pytest.approx(first["duration_seconds"])
            readable = "select name from storage.objects where name = %(key)s"
            assert user.select(readable, {"key": first["object_key"]})
            assert not stranger.select(readable, {"key": first["object_key"]})
            assert [
                r["segment_index"] for r in user.select("select * from generation_segments")
            ] == [0]

            engine.release.set()
            indexes = [first["segment_index"]]
            while True:
                frame = await client.receive()
                payload = frame["payload"]["payload"] if frame["event"] == "broadcast" else {}
                if payload.get("table") == "generation_segments":
                    indexes.append(payload["record"]["segment_index"])
                # One message per state change: the task's carries its generation.
                record = payload.get("record", {})
                if (
                    payload.get("table") == "tasks"
                    and record.get("generation_id") == str(generation)
                    and record.get("status") == "completed"
                ):
                    break
        finally:
            await client.close()
        assert indexes == list(range(first["segment_count"])), (
            "every segment came before completion"
        )
        # The final file is adopted: the segments go (its audio is their join).
        await admin.wait_until(
            "select count(*) = 0 from storage.objects where bucket_id = 'generations' "
            "and name like %s",
            (f"{user.user_id}/{generation}/segments/%",),
        )
    assert not user.select("select * from generation_segments")
    assert user.select(
        "select 1 from generations where id = %(id)s and audio_object_key is not null",
        {"id": generation},
    )


async def test_cancel_stops_rendering_after_the_current_chunk_and_removes_the_segments(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    engine = HeldToneEngine()
    async with run_listener(engine=engine):
        voice = await ready_voice(admin, user)
        engine.rendered.clear()
        generation = user.generate(voice, LONG_TEXT)
        await engine.held.wait()
        await admin.wait_until(
            "select count(*) = 1 from generation_segments where generation_id = %s", (generation,)
        )
        assert segment_objects(admin, user, generation) == 1
        task = admin.task_of("generation_id", generation)
        assert user.cancel(task["id"]) == 1
        await admin.wait_until(
            "select count(*) = 0 from storage.objects where bucket_id = 'generations' "
            "and name like %s",
            (f"{user.user_id}/{generation}/segments/%",),
        )
    assert engine.rendered == [0, 1], "nothing was rendered after the chunk the cancel found"
    assert admin.value("select count(*) from generation_segments") == 0
    assert admin.value("select status from generations where id = %s", (generation,)) == (
        "cancelled"
    )
