"""The Modal engine against a fake of Modal's SDK (tests/gpu/fake_modal.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import modal.exception
import pytest

from gpu.audio import encode_wav
from gpu.engine import (
    Audio,
    CloneRequest,
    DesignRequest,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    JobContext,
)
from gpu.jobs import SynthesisJob, SynthesisResult
from gpu.modal_engine import CLASS_NAME, METHOD_NAME, ModalEngine, classify_modal_error
from tests.gpu.fake_modal import FakeModal

APP = "utter-tts-test"
WAV = encode_wav(__import__("array").array("h", [0, 100, -100, 0] * 600), 24_000)
AUDIO = Audio(WAV, 24_000, 2400 / 24_000)
CLONE = CloneRequest("Hello there.", "English", b"RIFF-reference", "a transcript", "voice-1")
DESIGN = DesignRequest("Hello there.", "English", "a calm old man")


class Recorder:
    def __init__(self, task_id: str = "task-1", resume_call_id: str | None = None) -> None:
        self.call_ids: list[str] = []
        self.progress: list[float] = []
        self.job = JobContext(task_id, resume_call_id, self._started, self._progress)

    async def _started(self, call_id: str) -> None:
        self.call_ids.append(call_id)

    async def _progress(self, fraction: float) -> None:
        self.progress.append(fraction)


def deployed(handler: Any) -> FakeModal:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, handler)
    return fake


async def answer(payload: dict[str, Any]) -> dict[str, Any]:
    SynthesisJob.from_wire(payload)  # the app would reject a malformed job
    return SynthesisResult(audio=AUDIO).to_wire()


async def forever(payload: dict[str, Any]) -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def wait_for_call(fake: FakeModal) -> None:
    await fake.spawned.wait()


async def test_clone_spawns_reports_the_call_id_and_returns_audio() -> None:
    fake = deployed(answer)
    engine = ModalEngine(APP, sdk=fake, poll_seconds=0.01)
    recorder = Recorder()
    audio = await engine.clone(CLONE, recorder.job)
    assert audio == AUDIO
    (call_id,) = fake.calls
    assert recorder.call_ids == [call_id]
    assert recorder.progress == [1.0]
    sent = fake.calls[call_id].payload
    assert sent["kind"] == "clone" and sent["voice_id"] == "voice-1"
    assert sent["reference_wav"] == b"RIFF-reference"


async def test_design_polls_until_the_call_finishes() -> None:
    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        assert payload["kind"] == "design" and payload["instruct"] == "a calm old man"
        return await answer(payload)

    fake = deployed(slow)
    audio = await ModalEngine(APP, sdk=fake, poll_seconds=0.005).design(DESIGN, Recorder().job)
    assert audio == AUDIO
    (call,) = fake.calls.values()
    assert call.polls > 1


async def test_a_restarted_listener_reattaches_instead_of_spawning() -> None:
    fake = deployed(answer)
    earlier = fake.spawn((APP, CLASS_NAME, METHOD_NAME), SynthesisJob.for_clone(CLONE).to_wire())
    recorder = Recorder(resume_call_id=earlier.object_id)
    audio = await ModalEngine(APP, sdk=fake, poll_seconds=0.01).clone(CLONE, recorder.job)
    assert audio == AUDIO
    assert list(fake.calls) == [earlier.object_id]  # no second (paid) call
    assert recorder.call_ids == []


async def test_a_vanished_call_is_replaced_by_a_new_one() -> None:
    fake = deployed(answer)
    recorder = Recorder(resume_call_id="fc-gone")
    assert await ModalEngine(APP, sdk=fake, poll_seconds=0.01).clone(CLONE, recorder.job) == AUDIO
    assert recorder.call_ids == list(fake.calls) and len(fake.calls) == 1


async def test_cancellation_cancels_the_remote_call_and_propagates() -> None:
    fake = deployed(forever)
    task = asyncio.create_task(
        ModalEngine(APP, sdk=fake, poll_seconds=0.01).clone(CLONE, Recorder().job)
    )
    await wait_for_call(fake)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (call,) = fake.calls.values()
    assert call.cancelled and call.task.cancelled()


async def test_the_engine_deadline_raises_engine_timeout_and_cancels_remotely() -> None:
    fake = deployed(forever)
    engine = ModalEngine(APP, sdk=fake, poll_seconds=0.01, timeout_seconds=0.05)
    with pytest.raises(EngineTimeout) as caught:
        await engine.design(DESIGN, Recorder().job)
    assert caught.value.retryable
    (call,) = fake.calls.values()
    assert call.cancelled


async def test_the_listeners_own_timeout_also_cancels_remotely() -> None:
    fake = deployed(forever)
    engine = ModalEngine(APP, sdk=fake, poll_seconds=0.01, timeout_seconds=None)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await engine.design(DESIGN, Recorder().job)
    (call,) = fake.calls.values()
    assert call.cancelled


async def test_an_app_that_is_not_deployed_is_unavailable_with_a_clear_message() -> None:
    engine = ModalEngine(APP, sdk=FakeModal(), poll_seconds=0.01)
    with pytest.raises(EngineUnavailable) as caught:
        await engine.clone(CLONE, Recorder().job)
    assert not caught.value.retryable
    assert "modal deploy gpu/modal_app.py" in str(caught.value) and APP in str(caught.value)


async def test_connection_trouble_while_spawning_is_retryable() -> None:
    fake = deployed(answer)
    fake.spawn_error = modal.exception.ConnectionError("could not connect to Modal")
    with pytest.raises(EngineError) as caught:
        await ModalEngine(APP, sdk=fake, poll_seconds=0.01).clone(CLONE, Recorder().job)
    assert caught.value.retryable


@pytest.mark.parametrize("raised, retryable", [
    (modal.exception.FunctionTimeoutError("ran 1800 s"), True),
    (RuntimeError("Qwen/Qwen3-TTS-12Hz-0.6B-Base is not in the weights volume"), False),
    (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"), True),
])  # fmt: skip
async def test_remote_failures_say_whether_a_retry_helps(
    raised: Exception, retryable: bool
) -> None:
    async def failing(payload: dict[str, Any]) -> dict[str, Any]:
        raise raised

    with pytest.raises(EngineError) as caught:
        await ModalEngine(APP, sdk=deployed(failing), poll_seconds=0.01).clone(
            CLONE, Recorder().job
        )
    assert caught.value.retryable is retryable
    assert str(raised) in str(caught.value)


async def test_an_error_result_from_the_app_becomes_an_engine_error() -> None:
    async def refuse(payload: dict[str, Any]) -> dict[str, Any]:
        return SynthesisResult.failure(
            "language 'Klingon' is not supported", retryable=False
        ).to_wire()

    with pytest.raises(EngineError, match="Klingon") as caught:
        await ModalEngine(APP, sdk=deployed(refuse), poll_seconds=0.01).clone(CLONE, Recorder().job)
    assert not caught.value.retryable


async def test_a_call_cancelled_elsewhere_is_not_retried() -> None:
    fake = deployed(forever)
    task = asyncio.create_task(
        ModalEngine(APP, sdk=fake, poll_seconds=0.01).clone(CLONE, Recorder().job)
    )
    await wait_for_call(fake)
    (call,) = fake.calls.values()
    await call.cancel.aio()  # e.g. from the Modal dashboard
    with pytest.raises(EngineError, match="cancelled on Modal") as caught:
        await task
    assert not caught.value.retryable


@pytest.mark.parametrize("raised, expected, retryable", [
    (modal.exception.OutputExpiredError(), EngineError, True),
    (modal.exception.InternalFailure("retry me"), EngineError, True),
    (modal.exception.ResourceExhaustedError("quota"), EngineError, True),
    (modal.exception.AuthError("bad token"), EngineUnavailable, False),
    (modal.exception.InvalidError("bad argument"), EngineError, False),
    (modal.exception.RequestSizeError("too big"), EngineError, False),
    (modal.exception.InputCancellation("cancelled"), EngineError, False),
    (OSError("network unreachable"), EngineError, True),
])  # fmt: skip
def test_error_classification(
    raised: BaseException, expected: type[EngineError], retryable: bool
) -> None:
    error = classify_modal_error(raised, modal, APP)
    assert isinstance(error, expected)
    assert error.retryable is retryable


def test_a_missing_modal_package_is_reported_as_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "modal", None)
    with pytest.raises(EngineUnavailable, match=r"pip install -e '\.\[modal\]'"):
        ModalEngine(APP)
