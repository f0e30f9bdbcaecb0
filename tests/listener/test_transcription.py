"""Transcription end to end: a user uploads a recording and inserts a voice without a
transcript, or a transcription row; the listener validates the recording (real
ffmpeg), has it transcribed and records the text; the rows end as the client contract
says. One test runs the real qwen-asr code on a tiny random model; the others use a
scripted transcriber where what it hears is what the test varies."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from devstack.acting import upload_as_user
from gpu.engine import JobContext, PermanentEngineError
from gpu.qwen_asr_local import QwenAsrLocalTranscriber
from gpu.qwen_asr_runtime import AsrRuntimeSettings
from gpu.reference import normalize_reference
from gpu.transcription import AlignedWord, Transcript, TranscriptionJob
from listener.settings import ListenerSettings
from tests.listener.conftest import Admin, Browser, RunListener
from tests.listener.scripted_transcriber import ScriptedTranscriber
from tests.listener.test_clone import spoken

HEARD = Transcript("This recording is the reference for a cloned voice.", "English")


def upload(user: Browser, storage: Path, recording: bytes) -> tuple[uuid.UUID, str]:
    """An upload at <uid>/<new id>/reference.wav, the key voices and transcriptions use."""
    object_id = uuid.uuid4()
    key = f"{user.user_id}/{object_id}/reference.wav"
    upload_as_user(user.url, storage, user.user_id, "references", key, recording)
    return object_id, key


def clone_untyped(user: Browser, storage: Path, recording: bytes) -> uuid.UUID:
    voice_id, key = upload(user, storage, recording)
    user.select(
        "insert into voices (id, name, language, reference_object_key) "
        "values (%(id)s, 'Untyped', 'English', %(key)s)",
        {"id": voice_id, "key": key},
    )
    return voice_id


def transcribe(user: Browser, storage: Path, recording: bytes) -> uuid.UUID:
    transcription_id, key = upload(user, storage, recording)
    user.select(
        "insert into transcriptions (id, audio_object_key) values (%(id)s, %(key)s)",
        {"id": transcription_id, "key": key},
    )
    return transcription_id


async def test_a_voice_inserted_without_a_transcript_is_ready_with_a_machine_one(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user = admin.new_user()
    transcriber = ScriptedTranscriber(HEARD)
    async with run_listener(transcriber=transcriber):
        voice_id = clone_untyped(user, listener_settings.storage_dir, spoken(12.0))
        await admin.wait_until("select status = 'ready' from voices where id = %s", (voice_id,))
        generation_id = user.generate(voice_id)
        await admin.wait_until(
            "select status = 'completed' from generations where id = %s", (generation_id,)
        )
    voice = user.select("select * from voices where id = %(id)s", {"id": voice_id})[0]
    assert (voice["reference_transcript"], voice["transcript_source"]) == (HEARD.text, "asr")
    assert voice["transcript_language"] == "English"
    # It heard the normalised reference (24 kHz mono WAV), with the voice's language.
    (job,) = transcriber.heard
    assert job.audio_wav[:4] == b"RIFF" and job.language == "English"
    assert int.from_bytes(job.audio_wav[24:28], "little") == 24_000


# Word timings for the 12 s recording: three phrases separated by clear pauses.
ALIGNED = Transcript(
    "One two three. Four five six seven. Eight nine.",
    "English",
    words=tuple(
        AlignedWord(text, start, start + 0.5)
        for text, start in (
            ("One", 0.3), ("two", 0.9), ("three.", 1.5),
            ("Four", 3.0), ("five", 3.6), ("six", 4.2), ("seven.", 4.8),
            ("Eight", 8.0), ("nine.", 8.6),
        )
    ),
)  # fmt: skip


async def test_a_machine_transcript_with_word_timings_cuts_the_reference_to_whole_phrases(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user = admin.new_user()
    transcriber = ScriptedTranscriber(ALIGNED, can_align=True)
    async with run_listener(transcriber=transcriber):
        voice_id = clone_untyped(user, listener_settings.storage_dir, spoken(12.0))
        await admin.wait_until("select status = 'ready' from voices where id = %s", (voice_id,))
    (job,) = transcriber.heard
    assert job.align
    voice = user.select("select * from voices where id = %(id)s", {"id": voice_id})[0]
    # 5-20 s of whole phrases: all three (8.8 s) is nearest 12 s; the padding before
    # the first word is what the recording's start allows.
    assert voice["reference_transcript"] == "One two three. Four five six seven. Eight nine."
    assert voice["transcript_source"] == "asr"
    start, end = voice["reference_cut_start_seconds"], voice["reference_cut_end_seconds"]
    assert (round(start, 2), round(end, 2)) == (0.2, 9.2)
    stored = (
        listener_settings.storage_dir / "references" / voice["normalized_object_key"]
    ).read_bytes()
    assert voice["reference_sha256"] == hashlib.sha256(stored).hexdigest()
    assert abs(voice["reference_duration_seconds"] - (end - start)) < 0.01


async def test_a_recording_with_no_speech_fails_the_voice_with_the_reason(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user = admin.new_user()
    async with run_listener(transcriber=ScriptedTranscriber(Transcript("", ""))):
        voice_id = clone_untyped(user, listener_settings.storage_dir, spoken(12.0))
        await admin.wait_until("select status = 'failed' from voices where id = %s", (voice_id,))
    voice = user.select("select error, reference_transcript from voices")[0]
    assert voice["reference_transcript"] is None
    assert voice["error"] == (
        "no speech found in the recording; upload a recording of someone speaking, "
        "or type the transcript"
    )
    assert admin.task_of("voice_id", voice_id)["attempts"] == 1  # not retried


async def test_without_a_recogniser_the_voice_waits_until_its_owner_types_the_transcript(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user = admin.new_user()
    async with run_listener():  # transcriber "none"
        voice_id = clone_untyped(user, listener_settings.storage_dir, spoken(12.0))
        await admin.wait_until(
            "select waiting_reason = 'transcription_unavailable' from voices where id = %s",
            (voice_id,),
        )
        voice = user.select("select status, normalized_object_key from voices")[0]
        assert voice["status"] == "pending" and voice["normalized_object_key"]
        assert admin.task_of("voice_id", voice_id)["status"] == "completed"
        user.select(
            "update voices set reference_transcript = %(t)s where id = %(id)s",
            {"t": "What the recording says, typed by its owner.", "id": voice_id},
        )
        generation_id = user.generate(voice_id)
        await admin.wait_until(
            "select status = 'completed' from generations where id = %s", (generation_id,)
        )
    voice = user.select("select status, transcript_source, waiting_reason from voices")[0]
    assert voice == {"status": "ready", "transcript_source": "typed", "waiting_reason": None}


async def test_a_transcription_completes_with_text_and_its_recording_becomes_a_voice(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user = admin.new_user()
    async with run_listener(transcriber=ScriptedTranscriber(HEARD)):
        transcription_id = transcribe(user, listener_settings.storage_dir, spoken(12.0))
        await admin.wait_until(
            "select status = 'completed' from transcriptions where id = %s", (transcription_id,)
        )
        row = user.select("select * from transcriptions")[0]
        assert (row["text"], row["detected_language"]) == (HEARD.text, "English")
        assert abs(row["duration_seconds"] - 12.0) < 0.1
        # The owner edits the text and clones from the same upload (same id and key).
        user.select(
            "insert into voices (id, name, language, reference_object_key, reference_transcript) "
            "values (%(id)s, 'Edited', 'English', %(key)s, %(t)s)",
            {"id": transcription_id, "key": row["audio_object_key"], "t": HEARD.text + " Edited."},
        )
        await admin.wait_until(
            "select status = 'ready' from voices where id = %s", (transcription_id,)
        )
    assert admin.value("select count(*) from tasks where type = 'transcribe' and cost = 0") == 1
    assert user.select("select transcript_source from voices")[0]["transcript_source"] == "typed"


async def test_a_transcription_without_a_recogniser_fails_saying_so(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user = admin.new_user()
    async with run_listener():
        transcription_id = transcribe(user, listener_settings.storage_dir, spoken(12.0))
        await admin.wait_until(
            "select status = 'failed' from transcriptions where id = %s", (transcription_id,)
        )
    assert user.select("select error from transcriptions")[0]["error"] == (
        "transcription is unavailable: no speech recogniser is configured; "
        "type the transcript instead"
    )


async def test_a_transcription_of_an_unusable_recording_fails_with_the_reason(
    admin: Admin, run_listener: RunListener, listener_settings: ListenerSettings
) -> None:
    user = admin.new_user()
    transcriber = ScriptedTranscriber(PermanentEngineError("never called"))
    async with run_listener(transcriber=transcriber):
        transcription_id = transcribe(user, listener_settings.storage_dir, spoken(4.0))
        await admin.wait_until(
            "select status = 'failed' from transcriptions where id = %s", (transcription_id,)
        )
    assert user.select("select error from transcriptions")[0]["error"] == (
        "reference audio is 4.0 s long; it must be between 10 s and 5 min"
    )
    assert transcriber.heard == []


async def test_the_real_qwen_asr_code_transcribes_a_voice_end_to_end(
    admin: Admin,
    run_listener: RunListener,
    listener_settings: ListenerSettings,
    tiny_asr_model: Path,
) -> None:
    """Upload, insert without a transcript, voice ready with what qwen-asr's
    Qwen3ASRModel (tiny random weights: the words are noise) wrote."""
    transcriber = QwenAsrLocalTranscriber(
        AsrRuntimeSettings(model=str(tiny_asr_model), max_new_tokens=48)
    )
    recording = spoken(12.0)
    user = admin.new_user()
    async with run_listener(transcriber=transcriber):
        voice_id = clone_untyped(user, listener_settings.storage_dir, recording)
        # Generous: the first call imports torch and loads the model on a shared CPU.
        await admin.wait_until(
            "select status in ('ready', 'failed') from voices where id = %s",
            (voice_id,),
            within=300,
        )
    voice = user.select("select * from voices")[0]
    # What the same model says for this recording, asked directly. It heard the whole
    # normalised upload; the stored reference is that with its edge silence trimmed.
    expected = await transcriber.transcribe(
        TranscriptionJob(normalize_reference(recording).wav, "English"), JobContext("direct")
    )
    assert (voice["status"], voice["transcript_source"]) == ("ready", "asr"), voice["error"]
    assert voice["reference_transcript"] == expected.text.strip()
    assert voice["transcript_language"] == "English"
