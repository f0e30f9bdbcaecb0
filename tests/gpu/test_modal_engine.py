"""The Modal engine against a fake of Modal's SDK (tests/gpu/fake_modal.py)."""

from __future__ import annotations

import asyncio
import time
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
    Segment,
    VoiceReference,
)
from gpu.jobs import CANCELLED_MESSAGE, CallControl, SynthesisJob, SynthesisResult
from gpu.modal_engine import CLASS_NAME, METHOD_NAME, ModalEngine, classify_modal_error
from gpu.segments import queue_name, to_parts
from tests.gpu.fake_modal import FakeModal

APP = "utter-tts-test"
WAV = encode_wav(__import__("array").array("h", [0, 100, -100, 0] * 600), 24_000)
AUDIO = Audio(WAV, 24_000, 2400 / 24_000)
REFERENCE = VoiceReference(
    voice_id="voice-1",
    sha256="ab" * 32,
    transcript="a transcript",
    url="https://project.supabase.co/storage/v1/object/sign/references/u/voice-1/normalized.wav?token=t",
)
CLONE = CloneRequest("Hello there.", "English", REFERENCE)
DESIGN = DesignRequest("Hello there.", "English", "a calm old man")


class Recorder:
    def __init__(
        self,
        task_id: str = "task-1",
        resume_call_id: str | None = None,
        keep_remote_work: bool = False,
    ) -> None:
        self.call_ids: list[str] = []
        self.progress: list[float] = []
        self.job = JobContext(
            task_id, resume_call_id, self._started, self._progress, lambda: keep_remote_work
        )

    async def _started(self, call_id: str) -> None:
        self.call_ids.append(call_id)

    async def _progress(self, fraction: float) -> None:
        self.progress.append(fraction)


def deployed(handler: Any) -> FakeModal:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, handler)
    return fake


def control(fake: FakeModal) -> Any:
    return fake.Dict.from_name(CallControl.dict_name(APP), create_if_missing=True)


def engine(fake: FakeModal, **options: Any) -> ModalEngine:
    return ModalEngine(APP, sdk=fake, poll_seconds=0.01, **options)


async def answer(payload: dict[str, Any]) -> dict[str, Any]:
    SynthesisJob.from_wire(payload)  # the app would reject a malformed job
    return SynthesisResult(audio=AUDIO).to_wire()


async def forever(payload: dict[str, Any]) -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def gpu_code(
    fake: FakeModal, *, queued: float = 0.0, chunks: int = 1_000_000, chunk_seconds: float = 0.01
) -> Any:
    """What gpu/modal_app.py does with one request (run_batch): after `queued` seconds
    at Modal it marks the request started, then generates chunk after chunk, checking
    the request's cancellation flag between them."""

    async def handler(payload: dict[str, Any]) -> dict[str, Any]:
        ticket = payload["ticket"]
        await asyncio.sleep(queued)
        store = control(fake)
        store.put(CallControl.started_key(ticket), time.time())
        for _ in range(chunks):
            if store.contains(CallControl.cancel_key(ticket)):
                return SynthesisResult.failure(CANCELLED_MESSAGE, retryable=False).to_wire()
            await asyncio.sleep(chunk_seconds)
        return SynthesisResult(audio=AUDIO).to_wire()

    return handler


async def spawned(fake: FakeModal, count: int) -> None:
    while len(fake.inputs) < count:
        fake.spawned.clear()
        await fake.spawned.wait()


def only_input(fake: FakeModal) -> Any:
    (item,) = fake.inputs.values()
    return item


def flagged(fake: FakeModal, item: Any) -> bool:
    return CallControl.cancel_key(item.payload["ticket"]) in control(fake).data


async def test_clone_spawns_reports_the_call_and_ticket_and_returns_audio() -> None:
    fake = deployed(answer)
    recorder = Recorder()
    audio = await engine(fake).clone(CLONE, recorder.job)
    assert audio == AUDIO
    item = only_input(fake)
    assert recorder.call_ids == [CallControl.call_handle(item.call_id, item.payload["ticket"])]
    assert recorder.progress == [1.0]
    assert item.payload["kind"] == "clone" and item.payload["voice_id"] == "voice-1"
    assert len(item.payload["ticket"]) == 32
    # The voice's prepared reference by hash and URL, never its audio.
    assert (item.payload["reference_sha256"], item.payload["reference_url"]) == (
        REFERENCE.sha256,
        REFERENCE.url,
    )
    assert not [value for value in item.payload.values() if isinstance(value, bytes)]
    assert SynthesisJob.from_wire(item.payload).reference == REFERENCE


async def test_design_polls_until_the_call_finishes() -> None:
    async def slow(payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        assert payload["kind"] == "design" and payload["instruct"] == "a calm old man"
        return await answer(payload)

    fake = deployed(slow)
    assert await engine(fake).design(DESIGN, Recorder().job) == AUDIO
    assert only_input(fake).polls > 1


async def test_a_restarted_listener_reattaches_instead_of_spawning() -> None:
    fake = deployed(answer)
    earlier = fake.spawn((APP, CLASS_NAME, METHOD_NAME), SynthesisJob.for_clone(CLONE).to_wire())
    recorder = Recorder(resume_call_id=CallControl.call_handle(earlier.object_id, "t-1"))
    assert await engine(fake).clone(CLONE, recorder.job) == AUDIO
    assert list(fake.inputs) == [earlier.object_id]  # no second (paid) call
    assert recorder.call_ids == []


async def test_a_call_modal_does_not_know_is_replaced_when_it_is_read() -> None:
    """from_id is lazy: the unknown id surfaces as NotFoundError on the first get."""
    fake = deployed(answer)
    recorder = Recorder(resume_call_id="fc-gone/t-1")
    assert await engine(fake).clone(CLONE, recorder.job) == AUDIO
    (item,) = fake.inputs.values()
    assert recorder.call_ids == [CallControl.call_handle(item.call_id, item.payload["ticket"])]


async def test_a_resumed_call_whose_output_expired_is_replaced_by_a_fresh_call() -> None:
    fake = deployed(answer)
    earlier = fake.spawn((APP, CLASS_NAME, METHOD_NAME), SynthesisJob.for_clone(CLONE).to_wire())
    fake.expire(earlier.object_id)
    recorder = Recorder(resume_call_id=earlier.object_id)
    assert await engine(fake).clone(CLONE, recorder.job) == AUDIO
    assert len(fake.inputs) == 2 and len(recorder.call_ids) == 1


async def test_a_cancel_flags_the_request_and_never_cancels_through_modal() -> None:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake))
    task = asyncio.create_task(engine(fake).clone(CLONE, Recorder().job))
    await fake.spawned.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    item = only_input(fake)
    assert flagged(fake, item) and item.cancel_requests == 0
    result = SynthesisResult.from_wire(await item.task)  # the GPU code dropped it
    assert result.error_message == CANCELLED_MESSAGE


async def test_one_users_cancel_leaves_the_rest_of_the_batch_running() -> None:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake, chunks=20))
    mine = asyncio.create_task(engine(fake).clone(CLONE, Recorder("mine").job))
    theirs = asyncio.create_task(engine(fake).design(DESIGN, Recorder("theirs").job))
    await spawned(fake, 2)
    fake.batch_together(*fake.inputs)
    mine.cancel()
    assert await theirs == AUDIO
    with pytest.raises(asyncio.CancelledError):
        await mine
    assert all(item.cancel_requests == 0 for item in fake.inputs.values())


async def test_a_call_from_before_tickets_is_never_cancelled_through_modal() -> None:
    """Its handle has no ticket, so no flag can stop it; Modal's cancel would stop every
    request in its container (sync inputs under @modal.concurrent: modal 1.6.4,
    modal/_container_entrypoint.py). Giving up on it leaves it, and its container
    mates, running."""
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake, queued=3600))
    legacy = fake.spawn(
        (APP, CLASS_NAME, METHOD_NAME), SynthesisJob.for_clone(CLONE).to_wire() | {"ticket": ""}
    )
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake, chunks=30))
    theirs = asyncio.create_task(engine(fake).design(DESIGN, Recorder("theirs").job))
    await spawned(fake, 2)
    fake.batch_together(*fake.inputs)  # one container
    mine = engine(fake, queue_timeout_seconds=0.05)
    with pytest.raises(EngineTimeout):
        await mine.clone(CLONE, Recorder("mine", resume_call_id=legacy.object_id).job)
    assert fake.inputs[legacy.object_id].cancel_requests == 0
    assert await theirs == AUDIO  # another user's request in the same container


async def test_a_batch_terminated_through_modal_is_retried_on_a_fresh_call() -> None:
    """Someone cancels a batch-mate through Modal (or the container stops): every input
    of the batch ends in RemoteError. Not this task's doing: retryable."""
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake))
    mine = asyncio.create_task(engine(fake).clone(CLONE, Recorder("mine").job))
    other = fake.spawn((APP, CLASS_NAME, METHOD_NAME), SynthesisJob.for_design(DESIGN).to_wire())
    await spawned(fake, 2)
    fake.batch_together(*fake.inputs)
    await other.cancel.aio()
    with pytest.raises(EngineError, match="terminated on Modal") as caught:
        await mine
    assert caught.value.retryable


async def test_a_call_terminated_after_its_own_cancel_flag_is_not_retried() -> None:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, forever)
    mine = asyncio.create_task(engine(fake).clone(CLONE, Recorder().job))
    await fake.spawned.wait()
    await asyncio.sleep(0.02)
    item = only_input(fake)
    control(fake).put(CallControl.cancel_key(item.payload["ticket"]), time.time())
    fake.terminate_container(item.call_id)
    with pytest.raises(EngineError, match="cancelled") as caught:
        await mine
    assert not caught.value.retryable


async def test_a_listener_that_only_stops_waiting_leaves_the_remote_work_running() -> None:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake))
    task = asyncio.create_task(engine(fake).clone(CLONE, Recorder(keep_remote_work=True).job))
    await fake.spawned.wait()
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    item = only_input(fake)
    assert not flagged(fake, item) and item.cancel_requests == 0 and not item.task.done()
    item.task.cancel()


async def test_time_queued_at_modal_does_not_count_against_the_execution_limit() -> None:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake, queued=0.3, chunks=2))
    modal_engine = engine(fake, timeout_seconds=0.2, queue_timeout_seconds=5)
    assert await modal_engine.design(DESIGN, Recorder().job) == AUDIO


async def test_a_request_that_never_starts_times_out_on_the_queue_limit() -> None:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake, queued=3600))
    modal_engine = engine(fake, timeout_seconds=5, queue_timeout_seconds=0.1)
    with pytest.raises(EngineTimeout, match="without starting") as caught:
        await modal_engine.design(DESIGN, Recorder().job)
    assert caught.value.retryable
    item = only_input(fake)
    assert flagged(fake, item)  # when it does start, the GPU code drops it
    item.task.cancel()


async def test_the_execution_limit_counts_from_the_start_and_stops_the_request() -> None:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake))
    with pytest.raises(EngineTimeout, match=r"limit 0\.1 s") as caught:
        await engine(fake, timeout_seconds=0.1).design(DESIGN, Recorder().job)
    assert caught.value.retryable
    item = only_input(fake)
    assert flagged(fake, item)
    assert SynthesisResult.from_wire(await item.task).error_message == CANCELLED_MESSAGE


async def test_the_listeners_own_timeout_also_stops_the_request() -> None:
    fake = FakeModal()
    fake.deploy(APP, CLASS_NAME, METHOD_NAME, gpu_code(fake))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await engine(fake, timeout_seconds=None).design(DESIGN, Recorder().job)
    assert flagged(fake, only_input(fake))


async def test_an_app_that_is_not_deployed_is_unavailable_with_a_clear_message() -> None:
    with pytest.raises(EngineUnavailable) as caught:
        await engine(FakeModal()).clone(CLONE, Recorder().job)
    assert not caught.value.retryable
    assert "modal deploy gpu/modal_app.py" in str(caught.value) and APP in str(caught.value)


async def test_connection_trouble_while_spawning_is_retryable() -> None:
    fake = deployed(answer)
    fake.spawn_error = modal.exception.ConnectionError("could not connect to Modal")
    with pytest.raises(EngineError) as caught:
        await engine(fake).clone(CLONE, Recorder().job)
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
        await engine(deployed(failing)).clone(CLONE, Recorder().job)
    assert caught.value.retryable is retryable
    assert str(raised) in str(caught.value)


async def test_an_error_result_from_the_app_becomes_an_engine_error() -> None:
    async def refuse(payload: dict[str, Any]) -> dict[str, Any]:
        return SynthesisResult.failure(
            "language 'Klingon' is not supported", retryable=False
        ).to_wire()

    with pytest.raises(EngineError, match="Klingon") as caught:
        await engine(deployed(refuse)).clone(CLONE, Recorder().job)
    assert not caught.value.retryable


async def test_an_output_that_expired_on_a_fresh_call_is_retryable() -> None:
    fake = FakeModal()

    async def expiring(payload: dict[str, Any]) -> dict[str, Any]:
        fake.expire(next(iter(fake.inputs)))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    fake.deploy(APP, CLASS_NAME, METHOD_NAME, expiring)
    with pytest.raises(EngineError, match="expired") as caught:
        await engine(fake).clone(CLONE, Recorder().job)
    assert caught.value.retryable
    only_input(fake).task.cancel()


@pytest.mark.parametrize("raised, expected, retryable", [
    (modal.exception.OutputExpiredError(), EngineError, True),
    (modal.exception.RemoteError(""), EngineError, True),
    (modal.exception.InternalFailure("retry me"), EngineError, True),
    (modal.exception.ResourceExhaustedError("quota"), EngineError, True),
    (modal.exception.AuthError("bad token"), EngineUnavailable, False),
    (modal.exception.InvalidError("bad argument"), EngineError, False),
    (modal.exception.RequestSizeError("too big"), EngineError, False),
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


def segment_audio(samples: int, value: int = 100) -> Audio:
    wav = encode_wav(__import__("array").array("h", [value] * samples), 24_000)
    return Audio(wav, 24_000, samples / 24_000)


async def test_segments_reach_the_job_while_the_call_runs_in_order_and_before_the_answer() -> None:
    """The GPU code puts each finished chunk into the request's partition of the
    segments Queue (gpu/modal_app.py run_request); the engine hands them on while the
    call still runs. Here the call cannot end until the engine has reported segment 0,
    and its last segment is bigger than one Queue item, so it travels in parts."""
    fake = FakeModal()
    seen_first = asyncio.Event()
    big = segment_audio(400_000)  # 800 KB of WAV: two parts
    pieces = [segment_audio(2400, 1), segment_audio(2400, 2), big]

    async def handler(payload: dict[str, Any]) -> dict[str, Any]:
        segments = fake.Queue.from_name(queue_name(APP), create_if_missing=True)
        for index, audio in enumerate(pieces):
            for item in to_parts(Segment(index, len(pieces), audio)):
                segments.put(item, partition=payload["ticket"], partition_ttl=3600)
            if index == 0:
                await seen_first.wait()
        return SynthesisResult(audio=AUDIO).to_wire()

    fake.deploy(APP, CLASS_NAME, METHOD_NAME, handler)
    reported: list[Segment] = []
    call_done = False

    async def on_segment(segment: Segment) -> None:
        assert not call_done
        reported.append(segment)
        seen_first.set()

    job = JobContext("task-segments", on_segment=on_segment)
    audio = await engine(fake).clone(CLONE, job)
    call_done = True
    assert audio == AUDIO
    assert [(s.index, s.count) for s in reported] == [(0, 3), (1, 3), (2, 3)]
    assert [s.audio for s in reported] == pieces
    assert len(to_parts(Segment(2, 3, big))) == 2
    assert fake.queues[queue_name(APP)].waiting(only_input(fake).payload["ticket"]) == 0


async def test_a_segment_whose_first_part_was_taken_elsewhere_is_skipped() -> None:
    """A listener that re-attaches after another took part of a segment: the torn
    segment is dropped (the answer still carries it), the next one is reported."""
    fake = FakeModal()
    ticket = "t" * 32
    parts = to_parts(Segment(0, 2, segment_audio(400_000)))
    queue = fake.Queue.from_name(queue_name(APP), create_if_missing=True)
    for item in [parts[1], *to_parts(Segment(1, 2, segment_audio(10)))]:
        queue.put(item, partition=ticket)
    reported: list[Segment] = []

    async def on_segment(segment: Segment) -> None:
        reported.append(segment)

    fake.deploy(APP, CLASS_NAME, METHOD_NAME, answer)
    call = await fake.Cls.from_name(APP, CLASS_NAME)().synthesize.spawn.aio({"kind": "design"})
    job = JobContext(
        "task-torn", resume_call_id=CallControl.call_handle(call.object_id, ticket),
        on_segment=on_segment,
    )  # fmt: skip
    await engine(fake).design(DESIGN, job)
    assert [(s.index, s.audio.duration_seconds) for s in reported] == [(1, 10 / 24_000)]


async def test_a_failed_call_reports_no_more_segments_and_leaves_no_reader() -> None:
    fake = FakeModal()

    async def handler(payload: dict[str, Any]) -> dict[str, Any]:
        segments = fake.Queue.from_name(queue_name(APP), create_if_missing=True)
        for item in to_parts(Segment(0, 3, segment_audio(10))):
            segments.put(item, partition=payload["ticket"])
        return SynthesisResult.failure("broken", retryable=False).to_wire()

    fake.deploy(APP, CLASS_NAME, METHOD_NAME, handler)
    before = asyncio.all_tasks()
    with pytest.raises(EngineError, match="broken"):
        await engine(fake).design(DESIGN, JobContext("task-failed"))
    assert asyncio.all_tasks() == before


def test_the_fake_queue_refuses_what_modal_refuses() -> None:
    queue = FakeModal().Queue.from_name("q", create_if_missing=True)
    with pytest.raises(modal.exception.InvalidError):
        queue.put(1, partition="")
    with pytest.raises(modal.exception.InvalidError):
        queue.put(1, partition="p" * 65)
    with pytest.raises(modal.exception.RequestSizeError):
        queue.put(b"x" * (1024 * 1024 + 1), partition="p")
    with pytest.raises(modal.exception.NotFoundError):
        FakeModal().Queue.from_name("missing")


async def test_the_fake_queue_reads_in_order_and_times_out_with_queue_empty() -> None:
    import queue as stdlib_queue

    fake_queue = FakeModal().Queue.from_name("q", create_if_missing=True)
    for n in range(3):
        fake_queue.put(n, partition="a")
    fake_queue.put("other", partition="b")
    assert await fake_queue.get_many.aio(2, partition="a") == [0, 1]
    assert await fake_queue.get.aio(partition="a") == 2
    assert await fake_queue.get.aio(block=False, partition="a") is None
    assert await fake_queue.get_many.aio(5, block=False, partition="a") == []
    with pytest.raises(stdlib_queue.Empty):
        await fake_queue.get.aio(timeout=0.01, partition="a")
    assert await fake_queue.get.aio(partition="b") == "other"
