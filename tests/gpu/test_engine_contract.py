"""The engine contract, checked against every engine that runs here: espeak-ng, and
the in-process Qwen3-TTS engine on a tiny random model (real qwen-tts code; its
output is noise). The Modal engine's contract is in test_modal_engine.py."""

from __future__ import annotations

import asyncio
import os
import wave
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from gpu.audio import decode_wav, join_chunks
from gpu.engine import (
    Audio,
    CloneRequest,
    DesignRequest,
    Engine,
    EngineTimeout,
    JobContext,
    Segment,
    VoiceReference,
)
from gpu.espeak_engine import EspeakEngine
from gpu.qwen_local import QwenLocalEngine
from gpu.text import speech_chunks
from gpu.tone_engine import ToneEngine

ENGINES = ("espeak", "qwen-local")
LONG_TEXT = " ".join(f"This is sentence number {n}, spoken to take a while." for n in range(60))
TINY_GENERATION = {"max_new_tokens": 12}

EngineFactory = Callable[..., Engine]


@pytest.fixture(params=ENGINES)
def make_engine(request: pytest.FixtureRequest, tiny_models: dict[str, Path]) -> EngineFactory:
    def build(**options: Any) -> Engine:
        if request.param == "espeak":
            return EspeakEngine(**options)
        return QwenLocalEngine.from_env(
            {"UTTER_QWEN_MODEL_DIR": str(tiny_models["root"]), "UTTER_QWEN_DEVICE": "cpu"},
            generate_options=TINY_GENERATION,
            **options,
        )

    return build


class Progress:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.job = JobContext("task-contract", on_progress=self.record)

    async def record(self, fraction: float) -> None:
        self.values.append(fraction)


def assert_valid_wav(audio: Audio) -> None:
    assert audio.wav[:4] == b"RIFF" and audio.wav[8:12] == b"WAVE"
    with wave.open(BytesIO(audio.wav)) as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == audio.sample_rate
        frames = reader.getnframes()
    assert frames > 0
    assert audio.duration_seconds == pytest.approx(frames / audio.sample_rate)


async def settle() -> None:
    # Progress from a worker thread is scheduled on the loop; let it run.
    for _ in range(5):
        await asyncio.sleep(0)


async def test_clone_returns_16_bit_mono_wav(
    make_engine: EngineFactory, reference: VoiceReference
) -> None:
    engine = make_engine()
    progress = Progress()
    request = CloneRequest("Hello there. How are you today?", "English", reference)
    audio = await engine.clone(request, progress.job)
    await settle()
    assert_valid_wav(audio)
    assert progress.values and max(progress.values) == 1.0
    await engine.aclose()


@pytest.mark.parametrize("language", ["English", "Chinese", "Japanese", "German"])
async def test_design_returns_16_bit_mono_wav(make_engine: EngineFactory, language: str) -> None:
    engine = make_engine()
    request = DesignRequest(
        "你好\uff0c世界。" if language == "Chinese" else "Hello world.",
        language,
        "a warm female voice",
    )
    assert_valid_wav(await engine.design(request, Progress().job))


async def test_engine_deadline_surfaces_as_engine_timeout(make_engine: EngineFactory) -> None:
    engine = make_engine(timeout_seconds=0.001)
    with pytest.raises(EngineTimeout) as caught:
        await engine.design(DesignRequest(LONG_TEXT, "English", "a calm voice"), Progress().job)
    assert caught.value.retryable


async def test_cancellation_propagates_and_the_engine_still_works(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    progress = Progress()
    started = asyncio.Event()

    async def note(fraction: float) -> None:
        started.set()

    job = JobContext("task-cancel", on_progress=note)
    task = asyncio.create_task(engine.design(DesignRequest(LONG_TEXT, "English", "a man"), job))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Nothing is left holding the engine: the next call runs normally.
    assert_valid_wav(
        await engine.design(DesignRequest("Still here.", "English", "a man"), progress.job)
    )


def espeak_children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = stat[stat.rindex(")") + 2 :].split()[1]
        if parent == me and name.startswith("espeak"):
            found.append(int(entry.name))
    return found


async def wait_for_espeak_child() -> None:
    # Polling /proc: a child process start raises no event to wait on.
    while not espeak_children():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


async def test_cancelling_espeak_kills_its_subprocess() -> None:
    # One chunk of the whole text, so the process runs long enough to be caught.
    engine = EspeakEngine(chunk_chars=10_000)
    task = asyncio.create_task(engine.clone(
        CloneRequest(LONG_TEXT * 2, "English", VoiceReference("voice-x", "0" * 64, "", "")), JobContext("task-kill")
    ))  # fmt: skip
    await wait_for_espeak_child()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert espeak_children() == []


async def test_espeak_deadline_kills_its_subprocess() -> None:
    engine = EspeakEngine(chunk_chars=10_000, timeout_seconds=None)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await engine.design(DesignRequest(LONG_TEXT * 2, "English", "a girl"), JobContext("t"))
    assert espeak_children() == []


STREAMED_TEXT = " ".join(
    f"Sentence {n} of a longer text, long enough for several chunks." for n in range(14)
)


async def test_each_chunk_is_reported_in_text_order_before_the_answer_which_joins_them(
    make_engine: EngineFactory, reference: VoiceReference
) -> None:
    """Streamed audio: every chunk is handed to `on_segment` once, in text order, all
    before the call returns, and the answer's samples are the join of the segments'."""
    engine = make_engine()
    segments: list[Segment] = []
    answered = False

    async def on_segment(segment: Segment) -> None:
        assert not answered
        segments.append(segment)

    job = JobContext("task-segments", on_segment=on_segment)
    request = CloneRequest(STREAMED_TEXT, "English", reference)
    audio = await engine.clone(request, job)
    answered = True
    count = len(segments)
    assert count > 2
    assert [(s.index, s.count) for s in segments] == [(n, count) for n in range(count)]
    for segment in segments:
        assert_valid_wav(segment.audio)
    pieces = [decode_wav(s.audio.wav).samples for s in segments]
    assert decode_wav(audio.wav).samples == join_chunks(pieces, audio.sample_rate)
    await engine.aclose()


async def test_the_tone_engine_reports_its_chunks_as_the_others_do() -> None:
    segments: list[Segment] = []

    async def on_segment(segment: Segment) -> None:
        segments.append(segment)

    audio = await ToneEngine().design(
        DesignRequest(STREAMED_TEXT, "English", "a tone"), JobContext("t", on_segment=on_segment)
    )
    assert [s.index for s in segments] == list(range(len(speech_chunks(STREAMED_TEXT))))
    pieces = [decode_wav(s.audio.wav).samples for s in segments]
    assert decode_wav(audio.wav).samples == join_chunks(pieces, audio.sample_rate)
