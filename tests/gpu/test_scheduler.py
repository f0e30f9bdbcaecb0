"""Continuous batching (gpu/scheduler.py) on the tiny Qwen3-TTS models: which chunks
share a model call, when each request is answered, and what a cancel drops. Order and
membership of model calls are asserted, never durations."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gpu.engine import CloneRequest, VoiceReference
from gpu.jobs import CANCELLED_MESSAGE, JobKind, SynthesisJob
from gpu.qwen_runtime import QwenRuntime, RuntimeSettings
from gpu.scheduler import Chunk, ChunkScheduler, Generated
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
            generate_options={"max_new_tokens": 6},
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


class CallLog:
    """Records which request (by ticket) each chunk of every model call belonged to,
    and can hold the first call until released."""

    def __init__(self, runtime: QwenRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[str]] = []
        self.first_call_started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        original = runtime.generate

        def logged(kind: JobKind, chunks: Sequence[Chunk]) -> list[Generated]:
            self.calls.append([chunk.job.ticket for chunk in chunks])
            self.first_call_started.set()
            self.release.wait()
            return original(kind, chunks)

        monkeypatch.setattr(runtime, "generate", logged)


def test_a_request_arriving_during_a_long_one_joins_the_next_model_call(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = CallLog(runtime, monkeypatch)
    scheduler = ChunkScheduler(runtime)
    long = scheduler.submit(clone(reference, LONG_TEXT, "long"))
    assert long.total == 12
    assert scheduler.step()
    short = scheduler.submit(clone(reference, "Hi there.", "short"))
    assert scheduler.step()
    # The short request shared the second model call and is answered now, with the
    # long one's remaining chunks still to run.
    assert calls.calls == [["long"], ["short", "long", "long", "long"]]
    assert short.future.done() and short.future.result().audio is not None
    assert not long.future.done()
    while scheduler.step():
        pass
    assert long.future.result().audio is not None
    assert all(len(call) <= 4 for call in calls.calls)


def test_a_requests_first_chunk_runs_without_its_later_ones(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunks of one call finish together: the first chunk alone is ready after
    one short call, the earliest audio a listener can play."""
    calls = CallLog(runtime, monkeypatch)
    scheduler = ChunkScheduler(runtime)
    first_done_at: list[int] = []
    request = scheduler.submit(
        clone(reference, LONG_TEXT, "long"),
        on_progress=lambda fraction: first_done_at.append(len(calls.calls)),
    )
    while scheduler.step():
        pass
    assert calls.calls == [["long"], ["long"] * 4, ["long"] * 4, ["long"] * 3]
    assert first_done_at[0] == 1 and request.future.result().audio is not None


def test_a_request_for_the_other_model_is_served_before_the_long_ones_next_chunks(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = CallLog(runtime, monkeypatch)
    scheduler = ChunkScheduler(runtime)
    long = scheduler.submit(clone(reference, LONG_TEXT, "long"))
    scheduler.step()
    preview = scheduler.submit(design("Hello.", "preview"))
    scheduler.step()
    assert calls.calls == [["long"], ["preview"]]
    assert preview.future.done() and not long.future.done()


def test_a_cancelled_request_loses_only_its_own_chunks(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = CallLog(runtime, monkeypatch)
    flags: set[str] = set()
    scheduler = ChunkScheduler(runtime)
    kept, dropped = (
        scheduler.submit(clone(reference, LONG_TEXT, t), cancelled=lambda t=t: t in flags)
        for t in ("kept", "dropped")
    )
    scheduler.step()
    flags.add("dropped")
    while scheduler.step():
        pass
    assert calls.calls[0] == ["kept", "dropped"]
    assert all(call == ["kept"] * len(call) for call in calls.calls[1:])
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
    calls = CallLog(runtime, monkeypatch)
    calls.release.clear()  # hold the long request's first model call
    scheduler = ChunkScheduler(runtime)
    scheduler.start()
    try:
        finished: list[str] = []
        long = scheduler.submit(clone(reference, LONG_TEXT, "long"))
        long.future.add_done_callback(lambda _: finished.append("long"))
        assert calls.first_call_started.wait(timeout=60)
        shorts = [scheduler.submit(design(f"Short number {n}.", f"short-{n}")) for n in range(3)]
        for n, request in enumerate(shorts):
            request.future.add_done_callback(lambda _, n=n: finished.append(f"short-{n}"))
        calls.release.set()
        results = [r.future.result(timeout=120) for r in (long, *shorts)]
    finally:
        scheduler.close()
    assert all(result.audio is not None for result in results)
    # The three previews shared one model call, right after the long one's first.
    assert calls.calls[1] == ["short-0", "short-1", "short-2"]
    assert finished == ["short-0", "short-1", "short-2", "long"]


def test_a_request_that_cannot_run_is_answered_at_once(
    runtime: QwenRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = CallLog(runtime, monkeypatch)
    scheduler = ChunkScheduler(runtime)
    request = scheduler.submit(design("   ", "empty"))
    assert request.future.done() and "empty" in request.future.result().error_message
    assert not scheduler.step() and calls.calls == []


def test_a_failed_model_call_fails_the_requests_in_it_and_not_the_others(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = runtime.generate

    def failing_for_design(kind: JobKind, chunks: Sequence[Chunk]) -> Any:
        if kind == "design":
            raise RuntimeError("device-side assert triggered")
        return original(kind, chunks)

    monkeypatch.setattr(runtime, "generate", failing_for_design)
    scheduler = ChunkScheduler(runtime)
    spoken = scheduler.submit(clone(reference, "Fine.", "clone"))
    broken = scheduler.submit(design("Hello.", "design"))
    while scheduler.step():
        pass
    assert spoken.future.result().audio is not None
    failure = broken.future.result()
    assert failure.audio is None and "device-side assert" in failure.error_message
    assert not failure.error_retryable


def test_a_chunk_that_breaks_a_shared_call_fails_only_its_own_request(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = CallLog(runtime, monkeypatch)
    logged = runtime.generate

    def breaks_on_poison(kind: JobKind, chunks: Sequence[Chunk]) -> Any:
        result = logged(kind, chunks)
        if any("poison" in chunk.text for chunk in chunks):
            raise ValueError("torch.cat(): expected a non-empty list of Tensors")
        return result

    monkeypatch.setattr(runtime, "generate", breaks_on_poison)
    scheduler = ChunkScheduler(runtime)
    innocent = scheduler.submit(clone(reference, "Fine words.", "innocent"))
    guilty = scheduler.submit(clone(reference, "A poison pill.", "guilty"))
    bystander = scheduler.submit(clone(reference, "More words.", "bystander"))
    while scheduler.step():
        pass
    # The shared call failed; each of its requests then ran alone, in order.
    assert calls.calls == [
        ["innocent", "guilty", "bystander"],
        ["innocent"],
        ["guilty"],
        ["bystander"],
    ]
    assert innocent.future.result().audio is not None
    assert bystander.future.result().audio is not None
    failure = guilty.future.result()
    assert failure.audio is None and "non-empty list" in failure.error_message
