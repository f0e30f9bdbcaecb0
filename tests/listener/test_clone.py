"""Clone validation end to end: a user uploads a recording and inserts a voice; the
listener validates and normalises it (gpu.reference, real ffmpeg) and the voice becomes
ready, or fails with the precise reason when the recording is unusable."""

from __future__ import annotations

import io
import subprocess
import uuid
import wave
from pathlib import Path

from devstack.acting import upload_as_user
from listener.settings import ListenerSettings
from tests.listener.conftest import Admin, Browser, RunListener

TRANSCRIPT = "This recording is the reference for a cloned voice in the listener's tests."


def spoken(seconds: float) -> bytes:
    """Speech from espeak-ng, padded with silence to the wanted length."""
    speech = subprocess.run(
        ["espeak-ng", "--stdout", TRANSCRIPT], capture_output=True, check=True, timeout=60
    ).stdout
    with wave.open(io.BytesIO(speech)) as source:
        rate, frames = source.getframerate(), source.readframes(source.getnframes())
    wanted = int(seconds * rate) * 2
    frames = (frames + b"\0" * wanted)[:wanted]
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setnchannels(1)
        target.setsampwidth(2)
        target.setframerate(rate)
        target.writeframes(frames)
    return out.getvalue()


def clone(user: Browser, storage: Path, recording: bytes) -> uuid.UUID:
    voice_id = uuid.uuid4()
    key = f"{user.user_id}/{voice_id}/reference.wav"
    upload_as_user(user.url, storage, user.user_id, "references", key, recording)
    user.select(
        "insert into voices (id, name, language, reference_object_key, reference_transcript) "
        "values (%(id)s, 'My voice', 'English', %(key)s, %(t)s)",
        {"id": voice_id, "key": key, "t": TRANSCRIPT},
    )
    return voice_id


async def test_an_uploaded_voice_is_validated_normalised_and_speaks(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user = admin.new_user()
    async with run_listener():
        voice_id = clone(user, listener_settings.storage_dir, spoken(12.0))
        await admin.wait_until("select status = 'ready' from voices where id = %s", (voice_id,))
        generation_id = user.generate(voice_id)
        await admin.wait_until(
            "select status = 'completed' from generations where id = %s", (generation_id,)
        )
    voice = user.select("select * from voices")[0]
    assert voice["normalized_object_key"] == f"{user.user_id}/{voice_id}/normalized.wav"
    assert abs(voice["reference_duration_seconds"] - 12.0) < 0.1
    normalised = listener_settings.storage_dir / "references" / voice["normalized_object_key"]
    with wave.open(str(normalised)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 24_000)
    assert admin.task_of("voice_id", voice_id)["cost"] == 0  # cloning is free


async def test_a_too_short_recording_fails_the_voice_with_the_reason(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user = admin.new_user()
    async with run_listener():
        voice_id = clone(user, listener_settings.storage_dir, spoken(4.0))
        await admin.wait_until("select status = 'failed' from voices where id = %s", (voice_id,))
    voice = user.select("select status, error from voices")[0]
    assert voice["error"] == "reference audio is 4.0 s long; it must be between 10 s and 5 min"
    assert admin.task_of("voice_id", voice_id)["attempts"] == 1  # not retried: it cannot succeed
