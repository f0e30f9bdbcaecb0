"""Clone validation end to end: a user uploads a recording and inserts a voice; the
listener validates and normalises it (gpu.reference, real ffmpeg) and the voice becomes
ready, or fails with the precise reason when the recording is unusable."""

from __future__ import annotations

import hashlib
import io
import subprocess
import uuid
import wave
from pathlib import Path

import pytest
from modal._serialization import serialize

from devstack.acting import upload_as_user
from gpu.engine import JobContext, VoiceReference
from gpu.jobs import SynthesisJob
from gpu.modal_engine import ModalEngine
from gpu.transcription import Transcript
from listener.jobs import Handlers, Job, ReferenceNotRecorded
from listener.settings import ListenerSettings
from listener.storage import LocalObjectStore
from tests.listener.conftest import Admin, Browser, RunListener
from tests.listener.scripted_engine import ScriptedEngine

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
    engine = ScriptedEngine()
    async with run_listener(engine):
        voice_id = clone(user, listener_settings.storage_dir, spoken(12.0))
        await admin.wait_until("select status = 'ready' from voices where id = %s", (voice_id,))
        generation_id = user.generate(voice_id)
        await admin.wait_until(
            "select status = 'completed' from generations where id = %s", (generation_id,)
        )
    voice = user.select("select * from voices")[0]
    assert voice["normalized_object_key"] == f"{user.user_id}/{voice_id}/normalized.wav"
    normalised = listener_settings.storage_dir / "references" / voice["normalized_object_key"]
    with wave.open(str(normalised)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 24_000)
        seconds = audio.getnframes() / audio.getframerate()
    # The silence padding the recording to 12 s is trimmed; the words (all of a typed
    # transcript) are kept.
    assert 2.0 < seconds < 11.0
    assert abs(voice["reference_duration_seconds"] - seconds) < 0.01
    stored = normalised.read_bytes()
    assert voice["reference_sha256"] == hashlib.sha256(stored).hexdigest()
    assert voice["reference_cut_start_seconds"] is None
    assert admin.task_of("voice_id", voice_id)["cost"] == 0  # cloning is free

    # The generation named the voice's prepared reference; it did not carry it.
    (request,) = engine.clone_requests
    assert request.reference == VoiceReference(
        voice_id=str(voice_id),
        sha256=voice["reference_sha256"],
        transcript=TRANSCRIPT,
        url=normalised.resolve().as_uri(),
    )
    payload = ModalEngine.request_payload(SynthesisJob.for_clone(request), ticket="0" * 32)
    assert not [value for value in payload.values() if isinstance(value, bytes | bytearray)]
    # As the Modal engine would send it (modal/_utils/function_utils.py `_create_input`).
    assert len(serialize(((payload,), {}))) < 1024


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


async def test_a_run_that_no_longer_holds_its_task_stores_no_reference(tmp_path: Path) -> None:
    """worker.record_reference answers a lapsed run with the task's state: the run then
    stops before storing, so it cannot overwrite the reference the holder hashed."""
    outcomes: list[str] = []

    async def held_elsewhere(
        task_id: str,
        sha256: str,
        *,
        cut: tuple[float, float] | None = None,
        transcript: Transcript | None = None,
    ) -> str:
        outcomes.append(sha256)
        return "claimed_elsewhere"

    handlers = Handlers(
        ScriptedEngine(),
        LocalObjectStore(tmp_path, "postgresql://unused@localhost:1/unused"),
        normalise_reference=lambda upload: (upload, 0.0),
        record_reference=held_elsewhere,
    )
    preview = Job("task-1", "design_preview", "user-1", 2, None, "references", "k.wav", {
        "text": "Hello.", "language": "English", "instruct": "a calm voice",
    })  # fmt: skip
    with pytest.raises(ReferenceNotRecorded, match="claimed_elsewhere") as stopped:
        await handlers.run(preview, JobContext("task-1"))
    assert stopped.value.retryable and len(outcomes) == 1
