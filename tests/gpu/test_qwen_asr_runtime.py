"""Qwen3-ASR on a tiny random model: qwen-asr's real loading, batched transcription
and forced alignment (bench/tiny_qwen_asr_model.py), through our runtime and the
in-process transcriber. The model hears nothing, so these check shapes, batching,
refusals and cancellation, not words."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from gpu.engine import EngineError, EngineUnavailable, JobContext
from gpu.qwen_asr_local import LocalAsrWeights, QwenAsrLocalTranscriber
from gpu.qwen_asr_runtime import AsrRuntime, AsrRuntimeSettings
from gpu.reference import normalize_reference
from gpu.transcription import TranscriptionJob, TranscriptionResult


@pytest.fixture(scope="module")
def runtime(tiny_asr_model: Path) -> AsrRuntime:
    loaded = AsrRuntime(
        AsrRuntimeSettings(
            model=str(tiny_asr_model), aligner=str(tiny_asr_model), max_new_tokens=12
        )
    )
    loaded.load()
    return loaded


@pytest.fixture(scope="module")
def reference(recordings: Callable[[str], bytes]) -> bytes:
    return normalize_reference(recordings("speech_wav")).wav


def test_a_batch_is_transcribed_with_each_job_s_language(
    runtime: AsrRuntime, reference: bytes
) -> None:
    english, detected = runtime.transcribe(
        [TranscriptionJob(reference, "English"), TranscriptionJob(reference, "Auto")]
    )
    assert english.transcript is not None and detected.transcript is not None
    # A named language is forced (qwen-asr then reports it as given).
    assert english.transcript.language == "English"
    assert english.transcript.text and english.transcript.words == ()


def test_aligned_jobs_get_word_timings_from_the_forced_aligner(
    runtime: AsrRuntime, reference: bytes
) -> None:
    (result,) = runtime.transcribe([TranscriptionJob(reference, "English", align=True)])
    transcript = result.unwrap()
    # qwen-asr aligns its own transcript: one item per space-separated word.
    assert [w.text for w in transcript.words] == transcript.text.split()
    assert all(0 <= w.start <= w.end for w in transcript.words)


def test_a_bad_job_fails_alone(runtime: AsrRuntime, reference: bytes) -> None:
    bad_audio, klingon, good = runtime.transcribe(
        [
            TranscriptionJob(b"RIFF-not-really", "English"),
            TranscriptionJob(reference, "Klingon"),
            TranscriptionJob(reference, "English"),
        ]
    )
    assert "not a WAV file" in bad_audio.error_message and not bad_audio.error_retryable
    assert klingon.error_message == "the recogniser does not know the language 'Klingon'"
    assert good.transcript is not None


def test_word_timings_without_an_aligner_are_refused(
    tiny_asr_model: Path, reference: bytes
) -> None:
    plain = AsrRuntime(AsrRuntimeSettings(model=str(tiny_asr_model), max_new_tokens=4))
    plain.load()
    (result,) = plain.transcribe([TranscriptionJob(reference, "English", align=True)])
    with pytest.raises(EngineError, match="forced aligner, which is not configured"):
        result.unwrap()


async def test_the_local_transcriber_batches_waiting_requests_into_one_model_call(
    tiny_asr_model: Path, reference: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = QwenAsrLocalTranscriber(
        AsrRuntimeSettings(model=str(tiny_asr_model), max_new_tokens=4)
    )
    batches: list[int] = []
    model_call = transcriber._runtime.transcribe

    def counted(jobs: Sequence[TranscriptionJob]) -> list[TranscriptionResult]:
        batches.append(len(jobs))
        return model_call(jobs)

    monkeypatch.setattr(transcriber._runtime, "transcribe", counted)
    transcripts = await asyncio.gather(
        *(
            transcriber.transcribe(TranscriptionJob(reference, "English"), JobContext(f"t{i}"))
            for i in range(3)
        )
    )
    assert batches == [3]
    assert len({t.text for t in transcripts}) == 1  # same recording, same greedy answer
    await transcriber.aclose()


async def test_a_request_cancelled_before_its_batch_never_reaches_the_model(
    tiny_asr_model: Path, reference: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = QwenAsrLocalTranscriber(
        AsrRuntimeSettings(model=str(tiny_asr_model), max_new_tokens=4, max_batch_items=1)
    )
    heard: list[str] = []
    model_call = transcriber._runtime.transcribe

    def counted(jobs: Sequence[TranscriptionJob]) -> list[TranscriptionResult]:
        heard.extend(job.language for job in jobs)
        return model_call(jobs)

    monkeypatch.setattr(transcriber._runtime, "transcribe", counted)
    first = asyncio.create_task(
        transcriber.transcribe(TranscriptionJob(reference, "English"), JobContext("first"))
    )
    second = asyncio.create_task(
        transcriber.transcribe(TranscriptionJob(reference, "German"), JobContext("second"))
    )
    await asyncio.sleep(0)  # both are queued; batches hold one job each
    second.cancel()
    assert (await first).text
    with pytest.raises(asyncio.CancelledError):
        await second
    assert heard == ["English"]
    await transcriber.aclose()


def test_local_weights_come_from_the_environment(tiny_asr_model: Path, tmp_path: Path) -> None:
    found = LocalAsrWeights.from_env(
        {"UTTER_QWEN_ASR_MODEL_DIR": str(tiny_asr_model), "UTTER_QWEN_ALIGNER_DIR": str(tmp_path)}
    )
    assert (found.model_dir, found.aligner_dir) == (tiny_asr_model, None)  # no config.json there
    with pytest.raises(EngineUnavailable, match="UTTER_QWEN_ASR_MODEL_DIR is not set"):
        QwenAsrLocalTranscriber.from_env({})
    with pytest.raises(EngineUnavailable, match="no Qwen3-ASR weights in UTTER_QWEN_ASR_MODEL_DIR"):
        QwenAsrLocalTranscriber.from_env({"UTTER_QWEN_ASR_MODEL_DIR": str(tmp_path)})
