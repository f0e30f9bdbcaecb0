"""The Modal transcriber against the fake of Modal's SDK (tests/gpu/fake_modal.py):
the same call handling as the speech engine, on the app's Qwen3ASR class."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gpu.engine import EngineError, EngineTimeout
from gpu.jobs import CallControl
from gpu.modal_transcriber import ASR_CLASS_NAME, ASR_METHOD_NAME, ModalTranscriber
from gpu.transcription import Transcript, TranscriptionJob, TranscriptionResult
from tests.gpu.fake_modal import FakeModal
from tests.gpu.test_modal_engine import APP, Recorder, flagged, gpu_code, only_input

HEARD = Transcript("What the recording says.", "English")
JOB = TranscriptionJob(b"RIFF-normalised-reference", "English")


def deployed(handler: Any) -> FakeModal:
    fake = FakeModal()
    fake.deploy(APP, ASR_CLASS_NAME, ASR_METHOD_NAME, handler)
    return fake


async def answer(payload: dict[str, Any]) -> dict[str, Any]:
    TranscriptionJob.from_wire(payload)  # the app would reject a malformed job
    return TranscriptionResult(HEARD).to_wire()


async def test_a_transcription_spawns_reports_the_call_and_returns_the_transcript() -> None:
    fake = deployed(answer)
    recorder = Recorder()
    transcriber = ModalTranscriber(APP, sdk=fake, poll_seconds=0.01)
    assert await transcriber.transcribe(JOB, recorder.job) == HEARD
    item = only_input(fake)
    assert recorder.call_ids == [CallControl.call_handle("fc-0001", item.payload["ticket"])]
    assert recorder.progress == [1.0]
    assert item.payload == JOB.to_wire() | {"ticket": item.payload["ticket"]}


async def test_a_restarted_listener_reattaches_to_the_running_call() -> None:
    fake = deployed(answer)
    first = Recorder()
    heard = await ModalTranscriber(APP, sdk=fake).transcribe(JOB, first.job)
    again = Recorder(resume_call_id=first.call_ids[0])
    assert await ModalTranscriber(APP, sdk=fake).transcribe(JOB, again.job) == heard
    assert len(fake.inputs) == 1 and again.call_ids == []


async def test_cancellation_flags_the_request_without_ending_its_batch() -> None:
    fake = FakeModal()
    fake.deploy(APP, ASR_CLASS_NAME, ASR_METHOD_NAME, gpu_code(fake))
    transcriber = ModalTranscriber(APP, sdk=fake, poll_seconds=0.01)
    running = asyncio.create_task(transcriber.transcribe(JOB, Recorder().job))
    await fake.spawned.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    item = only_input(fake)
    assert flagged(fake, item) and item.cancel_requests == 0


async def test_the_deadline_is_an_engine_timeout_and_stops_the_request() -> None:
    fake = FakeModal()
    fake.deploy(APP, ASR_CLASS_NAME, ASR_METHOD_NAME, gpu_code(fake))
    transcriber = ModalTranscriber(APP, sdk=fake, poll_seconds=0.01, timeout_seconds=0.05)
    with pytest.raises(EngineTimeout):
        await transcriber.transcribe(JOB, Recorder().job)
    assert flagged(fake, only_input(fake))


async def test_an_error_from_the_app_becomes_an_engine_error() -> None:
    async def out_of_memory(payload: dict[str, Any]) -> dict[str, Any]:
        return TranscriptionResult.failure("CUDA out of memory", retryable=True).to_wire()

    transcriber = ModalTranscriber(APP, sdk=deployed(out_of_memory), poll_seconds=0.01)
    with pytest.raises(EngineError, match="CUDA out of memory") as raised:
        await transcriber.transcribe(JOB, Recorder().job)
    assert raised.value.retryable


async def test_an_app_without_the_asr_class_is_unavailable() -> None:
    transcriber = ModalTranscriber(APP, sdk=FakeModal(), poll_seconds=0.01)
    with pytest.raises(EngineError, match=r"\(class Qwen3ASR\) was not found: deploy it"):
        await transcriber.transcribe(JOB, Recorder().job)
