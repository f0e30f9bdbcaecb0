"""Continuous batching (gpu/scheduler.py) on the tiny Qwen3-TTS models: which chunks
join the running batches and when, when each request is answered, what a cancel and a
failure drop, and how a streamed first chunk is heard. Order and membership of
admissions are asserted, never durations."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.tiny_qwen_model import CODEBOOK_SIZE
from gpu.engine import Audio, CloneRequest, VoiceReference
from gpu.jobs import CANCELLED_MESSAGE, SynthesisJob, SynthesisResult
from gpu.qwen_runtime import QwenBatch, QwenRuntime, RuntimeSettings
from gpu.scheduler import Advanced, Chunk, ChunkScheduler, Generated, Plan
from tests.gpu.conftest import for_voice

LONG_TEXT = " ".join(f"Sentence number {n} is here." for n in range(12))  # 12 chunks


@pytest.fixture(scope="module")
def runtime(tiny_models: dict[str, Path]) -> QwenRuntime:
    loaded = QwenRuntime(
        RuntimeSettings(
            base_model=str(tiny_models["base"]),
            design_model=str(tiny_models["design"]),
            max_chunk_chars=30,
            max_batch_items=4,
            head_frames=3,
            generate_options={"max_new_tokens": 6, "eos_token_id": CODEBOOK_SIZE + 1023},
        )
    )
    loaded.load()
    return loaded


def clone(reference: VoiceReference, text: str, ticket: str) -> SynthesisJob:
    request = CloneRequest(text, "English", for_voice(reference, "voice-scheduled"))
    return replace(SynthesisJob.for_clone(request), ticket=ticket)


def design(text: str, ticket: str) -> SynthesisJob:
    return SynthesisJob(
        kind="design", text=text, language="English", instruct="a calm voice", ticket=ticket
    )


class Steps:
    """Records, per scheduler step, which requests (by ticket) had chunks admitted to
    which model; can hold the first admission until released and break steps."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.admitted: list[tuple[str, list[str]]] = []
        self.first_admitted = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.breaks: Callable[[list[Chunk]], bool] = lambda chunks: False
        admit, advance = QwenBatch.admit, QwenBatch.advance

        def admitting(batch: QwenBatch, chunks: Sequence[Chunk]) -> None:
            self.admitted.append((batch.kind, [chunk.job.ticket for chunk in chunks]))
            self.first_admitted.set()
            self.release.wait()
            admit(batch, chunks)

        def advancing(batch: QwenBatch) -> Any:
            if self.breaks(batch.running()):
                raise ValueError("torch.cat(): expected a non-empty list of Tensors")
            return advance(batch)

        monkeypatch.setattr(QwenBatch, "admit", admitting)
        monkeypatch.setattr(QwenBatch, "advance", advancing)

    def tickets(self) -> list[list[str]]:
        return [tickets for _, tickets in self.admitted]


def run_out(scheduler: ChunkScheduler) -> None:
    while scheduler.step():
        pass


def test_a_request_arriving_while_a_long_one_runs_starts_at_the_next_step(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(monkeypatch)
    scheduler = ChunkScheduler(runtime)
    long = scheduler.submit(clone(reference, LONG_TEXT, "long"))
    assert long.total == 12
    assert scheduler.step()
    short = scheduler.submit(clone(reference, "Hi there.", "short"))
    assert scheduler.step()
    # Three of the four places went to the long text; the last was kept for a
    # request with nothing running, and the short one took it at the next step.
    assert steps.tickets() == [["long"] * 3, ["short"]]
    while not short.done:
        scheduler.step()
    assert short.future.result().audio is not None and not long.done
    run_out(scheduler)
    assert long.future.result().audio is not None
    assert sum(len(t) for t in steps.tickets()) == 13


def test_a_place_freed_by_an_ended_chunk_is_taken_at_the_next_step(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    Steps(monkeypatch)
    scheduler = ChunkScheduler(runtime)
    request = scheduler.submit(clone(reference, LONG_TEXT, "long"))
    seen: list[tuple[int, int]] = []  # (rows running, chunks waiting) at every step
    advance = QwenBatch.advance

    def counted(batch: QwenBatch) -> Any:
        seen.append((len(batch.running()), len(request.waiting)))
        return advance(batch)

    monkeypatch.setattr(QwenBatch, "advance", counted)
    run_out(scheduler)
    assert request.future.result().audio is not None
    # While chunks waited, every step ran with all three places this request may
    # hold (the fourth is kept for newcomers).
    assert all(running == 3 for running, waiting in seen if waiting)
    assert next(waiting for _, waiting in seen if waiting) == 9


def test_a_request_for_the_other_model_runs_beside_the_long_one(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(monkeypatch)
    scheduler = ChunkScheduler(runtime)
    long = scheduler.submit(clone(reference, LONG_TEXT, "long"))
    scheduler.step()
    preview = scheduler.submit(design("Hello.", "preview"))
    scheduler.step()
    assert steps.admitted == [("clone", ["long"] * 3), ("design", ["preview"])]
    while not preview.done:
        scheduler.step()
    assert preview.future.result().audio is not None and not long.done
    run_out(scheduler)


def test_a_cancelled_request_loses_only_its_own_chunks(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(monkeypatch)
    flags: set[str] = set()
    scheduler = ChunkScheduler(runtime)
    kept, dropped = (
        scheduler.submit(clone(reference, LONG_TEXT, t), cancelled=lambda t=t: t in flags)
        for t in ("kept", "dropped")
    )
    scheduler.step()
    assert steps.tickets() == [["kept", "dropped", "kept"]]
    flags.add("dropped")
    scheduler.step()
    # Its row left the batch at the next step; nothing of it was admitted again.
    assert {chunk.job.ticket for chunk in scheduler._batches["clone"].running()} <= {"kept"}
    run_out(scheduler)
    assert all(tickets == ["kept"] * len(tickets) for tickets in steps.tickets()[1:])
    assert kept.future.result().audio is not None
    result = dropped.future.result()
    assert (result.audio, result.error_message, result.error_retryable) == (
        None,
        CANCELLED_MESSAGE,
        False,
    )


def test_the_loop_thread_answers_each_caller_when_its_own_chunks_are_done(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(monkeypatch)
    steps.release.clear()  # hold the long request's first admission
    scheduler = ChunkScheduler(runtime)
    scheduler.start()
    try:
        finished: list[str] = []
        long = scheduler.submit(clone(reference, LONG_TEXT, "long"))
        long.future.add_done_callback(lambda _: finished.append("long"))
        assert steps.first_admitted.wait(timeout=60)
        shorts = [scheduler.submit(design(f"Short number {n}.", f"short-{n}")) for n in range(3)]
        for n, request in enumerate(shorts):
            request.future.add_done_callback(lambda _, n=n: finished.append(f"short-{n}"))
        steps.release.set()
        results = [r.future.result(timeout=120) for r in (long, *shorts)]
    finally:
        scheduler.close()
    assert all(result.audio is not None for result in results)
    # The three previews joined the design model's batch together, beside the long one.
    assert ("design", ["short-0", "short-1", "short-2"]) in steps.admitted
    assert finished[-1] == "long"


def test_a_request_that_cannot_run_is_answered_at_once(
    runtime: QwenRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(monkeypatch)
    scheduler = ChunkScheduler(runtime)
    request = scheduler.submit(design("   ", "empty"))
    assert request.future.done() and "empty" in request.future.result().error_message
    assert not scheduler.step() and steps.admitted == []


def test_a_failed_step_fails_the_request_in_it_and_not_the_others(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(monkeypatch)
    steps.breaks = lambda chunks: any(chunk.kind == "design" for chunk in chunks)
    scheduler = ChunkScheduler(runtime)
    spoken = scheduler.submit(clone(reference, "Fine.", "clone"))
    broken = scheduler.submit(design("Hello.", "design"))
    run_out(scheduler)
    assert spoken.future.result().audio is not None
    failure = broken.future.result()
    assert failure.audio is None and "non-empty list" in failure.error_message
    assert not failure.error_retryable


def test_a_chunk_that_breaks_a_shared_step_fails_only_its_own_request(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = Steps(monkeypatch)
    steps.breaks = lambda chunks: any("poison" in chunk.text for chunk in chunks)
    scheduler = ChunkScheduler(runtime)
    innocent = scheduler.submit(clone(reference, "Fine words.", "innocent"))
    guilty = scheduler.submit(clone(reference, "A poison pill.", "guilty"))
    bystander = scheduler.submit(clone(reference, "More words.", "bystander"))
    run_out(scheduler)
    # The shared step failed; each of its requests then ran alone, in order.
    assert steps.tickets() == [
        ["innocent", "guilty", "bystander"],
        ["innocent"],
        ["guilty"],
        ["bystander"],
    ]
    assert innocent.future.result().audio is not None
    assert bystander.future.result().audio is not None
    failure = guilty.future.result()
    assert failure.audio is None and "non-empty list" in failure.error_message


def test_a_streamed_first_chunk_is_heard_in_two_parts_the_head_first(
    runtime: QwenRuntime, reference: VoiceReference
) -> None:
    """With a listener, the first chunk's first `head_frames` frames are a segment of
    their own, heard as soon as they are generated; the answer joins every segment."""
    scheduler = ChunkScheduler(runtime)  # head_frames=3 below, budgets of 6 frames
    heard: list[tuple[int, int, int]] = []  # (segment, count, step it was heard at)
    request = scheduler.submit(
        clone(reference, LONG_TEXT, "streamed"),
        on_segment=lambda index, count, audio: heard.append((index, count, scheduler.steps)),
    )
    run_out(scheduler)
    result = request.future.result().unwrap()
    assert [(index, count) for index, count, _ in heard] == [(n, 13) for n in range(13)]
    head_step, rest_step = heard[0][2], heard[1][2]
    assert head_step == 3 and rest_step > head_step
    assert result.duration_seconds > 0


class ScriptedModel:
    """A chunk model whose chunks say how many steps they run ("name:steps", one chunk
    per "|"-separated part), for scheduler situations the random tiny model cannot
    be steered into. Not a stand-in for anything outside: the scheduler's own
    contract (gpu.scheduler.ChunkModel) played by a script. A chunk named "bad..."
    breaks any admission it is part of. Waveforms are lists of the chunk's name, one
    entry per frame, so joins are checkable."""

    batch_limit = 4
    head_frames = 2

    def plan(self, job: SynthesisJob) -> Plan:
        parts = job.text.split("|")
        return Plan([Chunk(job, n, part, "clone") for n, part in enumerate(parts)], [])

    def new_batch(self, kind: str) -> ScriptedBatch:
        return ScriptedBatch()

    def generation_failure(self, exc: Exception) -> SynthesisResult:
        return SynthesisResult.failure(f"generation failed: {exc}", retryable=False)

    def continue_after(self, first: Chunk, waveform: Any, texts: list[str]) -> list[Chunk]:
        raise AssertionError("no design texts here")

    def assemble(self, job: SynthesisJob, waveforms: list[Any], at_limit: Any) -> SynthesisResult:
        joined = [frame for waveform in waveforms for frame in waveform]
        return SynthesisResult(
            Audio(wav=" ".join(joined).encode(), sample_rate=1, duration_seconds=len(joined))
        )

    def segment_audio(self, job: SynthesisJob, waveform: Any) -> Audio:
        return Audio(wav=" ".join(waveform).encode(), sample_rate=1, duration_seconds=len(waveform))


class ScriptedBatch:
    def __init__(self) -> None:
        self.frames: dict[int, tuple[Chunk, int]] = {}

    def running(self) -> list[Chunk]:
        return [chunk for chunk, _ in self.frames.values()]

    def admit(self, chunks: Sequence[Chunk]) -> None:
        if any(chunk.text.startswith("bad") for chunk in chunks):
            raise ValueError("bad prompt")
        self.frames.update({id(chunk): (chunk, 0) for chunk in chunks})

    def advance(self) -> Advanced:
        advanced = Advanced()
        for key, (chunk, frames) in list(self.frames.items()):
            name, steps = chunk.text.split(":")
            frames += 1
            self.frames[key] = (chunk, frames)
            if chunk.stream_head and frames == ScriptedModel.head_frames:
                advanced.heads.append((chunk, [name] * frames))
            if frames == int(steps):
                del self.frames[key]
                advanced.ended.append((chunk, Generated([name] * frames, at_limit=False)))
        return advanced

    def discard(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            self.frames.pop(id(chunk), None)

    def reset(self) -> None:
        self.frames.clear()


def test_a_failed_admission_leaves_the_running_rows_of_its_other_requests_alone() -> None:
    """A bad prompt that breaks an admission it shares with another request's next
    chunk costs that request nothing: its running rows go on (its head, already heard,
    stays valid) and the chunk admitted with the bad one runs again, by itself."""
    scheduler = ChunkScheduler(ScriptedModel())
    heard: list[str] = []
    # Step 1 admits r0, s0 and r1 (the fourth place is kept for newcomers); at step 2
    # r0's head is heard and s0 and r1 end, so three places are free for the newcomer
    # and r2, admitted together while r0 runs on.
    streamed = scheduler.submit(
        SynthesisJob(kind="clone", text="r0:9|r1:2|r2:3|r3:2", language="English"),
        on_segment=lambda index, count, audio: heard.append(audio.wav.decode()),
    )
    other = scheduler.submit(SynthesisJob(kind="clone", text="s0:2", language="English"))
    scheduler.step()
    scheduler.step()
    assert heard == ["r0 r0"]
    poisoned = scheduler.submit(SynthesisJob(kind="clone", text="bad:1", language="English"))
    run_out(scheduler)
    failure = poisoned.future.result()
    assert failure.audio is None and "bad prompt" in failure.error_message
    answer = streamed.future.result().unwrap().wav.decode()
    assert answer == " ".join(["r0"] * 9 + ["r1"] * 2 + ["r2"] * 3 + ["r3"] * 2)
    assert " ".join(heard) == answer
    assert other.future.result().audio is not None


def test_a_callback_that_raises_fails_its_own_request_and_the_step_goes_on(
    runtime: QwenRuntime, reference: VoiceReference
) -> None:
    """A request's progress or segment callback may raise (its caller's event loop is
    gone): that request fails, the other chunks ended at the same step are still
    recorded, and nothing is left running."""

    def gone(*_: Any) -> None:
        raise RuntimeError("Event loop is closed")

    scheduler = ChunkScheduler(runtime)
    broken = scheduler.submit(clone(reference, "Hello there.", "broken"), on_progress=gone)
    fine = scheduler.submit(clone(reference, "Hello there.", "fine"))
    run_out(scheduler)
    assert fine.future.result().audio is not None
    failure = broken.future.result()
    assert failure.audio is None and "Event loop is closed" in failure.error_message
    assert not scheduler.pending()


@pytest.mark.parametrize("seed", range(40))
def test_under_random_arrivals_cancels_and_failures_every_request_is_answered(seed: int) -> None:
    """Requests of random lengths arrive at random steps; some are cancelled, some carry
    a bad chunk, some listen for segments. Every request is answered; a listener hears
    its segments in order, and an answered request's audio is their join."""
    rng = random.Random(seed)
    scheduler = ChunkScheduler(ScriptedModel())
    flags: set[int] = set()
    heard: dict[int, list[str]] = {}
    requests: dict[int, Any] = {}
    for _ in range(200):
        if len(requests) < 12 and rng.random() < 0.3:
            n = len(requests)
            parts = [f"c{n}x{i}:{rng.randint(1, 6)}" for i in range(rng.randint(1, 5))]
            if rng.random() < 0.15:
                parts[rng.randrange(len(parts))] = "bad:1"
            listener = None
            if rng.random() < 0.5:
                heard[n] = []
                listener = lambda i, c, a, n=n: heard[n].append(a.wav.decode())  # noqa: E731
            requests[n] = scheduler.submit(
                SynthesisJob(kind="clone", text="|".join(parts), language="English"),
                cancelled=lambda n=n: n in flags,
                on_segment=listener,
            )
        if requests and rng.random() < 0.03:
            flags.add(rng.randrange(len(requests)))
        scheduler.step()
    run_out(scheduler)
    assert not scheduler.pending()
    for n, request in requests.items():
        result = request.future.result(timeout=0)
        if result.audio is not None and n in heard:
            assert " ".join(part for part in heard[n] if part) == result.audio.wav.decode()
