"""The shared Qwen3-TTS runtime on tiny random models: real qwen-tts loading, clone
prompts, batched generation and chunk joining."""

from __future__ import annotations

import wave
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gpu.engine import CloneRequest, EngineUnavailable, VoiceReference
from gpu.jobs import CANCELLED_MESSAGE, SynthesisJob
from gpu.qwen_local import LocalWeights, QwenLocalEngine
from gpu.qwen_runtime import GenerationStopped, QwenRuntime, RuntimeSettings
from gpu.text import chunk_text, token_budget
from gpu.voice_prompts import PromptStore, fetch_reference
from tests.gpu.conftest import for_voice, store_reference


@pytest.fixture(scope="module")
def runtime(tiny_models: dict[str, Path]) -> QwenRuntime:
    loaded = QwenRuntime(
        RuntimeSettings(
            base_model=str(tiny_models["base"]),
            design_model=str(tiny_models["design"]),
            max_chunk_chars=40,
            max_batch_items=4,
            generate_options={"max_new_tokens": 10},
        )
    )
    loaded.load()
    return loaded


class CallCounter:
    """Counts model calls (and their batch sizes) by wrapping the loaded model objects."""

    def __init__(self, runtime: QwenRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[tuple[str, int]] = []
        for kind, method in (
            ("clone", "generate_voice_clone"),
            ("design", "generate_voice_design"),
        ):
            model = runtime._models[kind]
            original = getattr(model, method)

            def counted(
                *args: Any, _original: Any = original, _kind: str = kind, **kwargs: Any
            ) -> Any:
                self.batches.append((_kind, len(kwargs["text"])))
                return _original(*args, **kwargs)

            monkeypatch.setattr(model, method, counted)


def clone_job(
    reference: VoiceReference, text: str, voice: str = "voice-1", language: str = "English"
) -> SynthesisJob:
    return SynthesisJob.for_clone(CloneRequest(text, language, for_voice(reference, voice)))


def wav_rate_and_frames(wav: bytes) -> tuple[int, int]:
    with wave.open(BytesIO(wav)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
        return reader.getframerate(), reader.getnframes()


def test_clone_and_design_produce_24_khz_wav(
    runtime: QwenRuntime, reference: VoiceReference
) -> None:
    design = SynthesisJob(
        kind="design", text="Hello world.", language="English", instruct="a deep voice"
    )
    results = runtime.synthesize([clone_job(reference, "Hello there."), design])
    for result in results:
        audio = result.unwrap()
        rate, frames = wav_rate_and_frames(audio.wav)
        assert rate == audio.sample_rate == 24_000
        assert audio.duration_seconds == pytest.approx(frames / rate)


def test_the_clone_prompt_is_encoded_once_per_voice_and_hash(
    runtime: QwenRuntime, reference: VoiceReference, tmp_path: Path
) -> None:
    misses, encoded = runtime.prompt_cache_misses, runtime.references_encoded
    runtime.synthesize([clone_job(reference, "First.", voice="voice-cache")])
    runtime.synthesize([clone_job(reference, "Second.", voice="voice-cache")])
    assert (runtime.prompt_cache_misses, runtime.references_encoded) == (misses + 1, encoded + 1)
    # A voice whose reference changed has a new hash: its old prompt is never used.
    changed = store_reference(tmp_path, fetched_bytes(reference) + b"\x00\x00", "voice-cache")
    assert changed.sha256 != reference.sha256
    runtime.synthesize([clone_job(changed, "Third.", voice="voice-cache")])
    assert (runtime.prompt_cache_misses, runtime.references_encoded) == (misses + 2, encoded + 2)


def fetched_bytes(reference: VoiceReference) -> bytes:
    return fetch_reference(reference)


def test_a_reference_that_no_longer_matches_its_hash_fails_for_good(
    runtime: QwenRuntime, reference: VoiceReference, tmp_path: Path
) -> None:
    altered = store_reference(tmp_path, fetched_bytes(reference), "voice-altered")
    Path(urlsplit(altered.url).path).write_bytes(b"RIFF-altered")
    (result,) = runtime.synthesize([clone_job(altered, "Hello.", voice="voice-altered")])
    assert result.audio is None and not result.error_retryable
    assert "does not match its hash" in result.error_message


def test_a_reference_gone_from_storage_fails_for_good_and_a_refused_url_is_retryable(
    runtime: QwenRuntime, reference: VoiceReference
) -> None:
    gone = VoiceReference(
        "voice-gone", reference.sha256, reference.transcript, "file:///nowhere.wav"
    )
    (result,) = runtime.synthesize([clone_job(gone, "Hello.", voice="voice-gone")])
    assert result.audio is None and not result.error_retryable
    assert "is gone" in result.error_message
    # A port nothing listens on: as an unreachable Storage, worth a fresh request.
    unreachable = VoiceReference(
        "voice-far", reference.sha256, reference.transcript, "http://127.0.0.1:9/x.wav"
    )
    (result,) = runtime.synthesize([clone_job(unreachable, "Hello.", voice="voice-far")])
    assert result.audio is None and result.error_retryable


def test_a_prompt_store_serves_another_runtime_without_fetching(
    tiny_models: dict[str, Path], reference: VoiceReference, tmp_path: Path
) -> None:
    """What a second container sees: the prompt the first one stored, by voice and hash,
    is loaded instead of fetching and encoding the reference again; saving a voice's
    new hash retires its old prompt file."""
    settings = RuntimeSettings(
        base_model=str(tiny_models["base"]),
        design_model=None,
        generate_options={"max_new_tokens": 8},
    )
    first = QwenRuntime(settings, prompt_store=PromptStore(tmp_path / "prompts"))
    first.load()
    (made,) = first.synthesize([clone_job(reference, "Hello.", voice="voice-stored")])
    assert made.audio is not None and first.references_encoded == 1
    stored = PromptStore(tmp_path / "prompts").path(for_voice(reference, "voice-stored"))
    assert stored.is_file()

    fetched: list[VoiceReference] = []

    def no_fetching(wanted: VoiceReference) -> bytes:
        fetched.append(wanted)
        raise AssertionError("the stored prompt should have been used")

    second = QwenRuntime(
        settings, prompt_store=PromptStore(tmp_path / "prompts"), fetch=no_fetching
    )
    second.load()
    (again,) = second.synthesize([clone_job(reference, "Hello again.", voice="voice-stored")])
    assert again.audio is not None
    assert (second.prompts_loaded, second.references_encoded, fetched) == (1, 0, [])

    changed = store_reference(tmp_path, fetched_bytes(reference) + b"\x00\x00", "voice-stored")
    first.synthesize([clone_job(changed, "New voice.", voice="voice-stored")])
    assert sorted(p.name for p in stored.parent.iterdir()) == [f"{changed.sha256}.pt"]


def test_compatible_jobs_and_chunks_share_model_calls(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CallCounter(runtime, monkeypatch)
    long_text = "One short sentence. Another short sentence. A third one here. And a fourth."
    jobs = [
        clone_job(reference, long_text, voice="voice-a"),
        clone_job(reference, "Hi.", voice="voice-b", language="Auto"),
        SynthesisJob(kind="design", text="Hello.", language="English", instruct="a child"),
        SynthesisJob(kind="design", text="Bonjour.", language="French", instruct="an old man"),
    ]
    results = runtime.synthesize(jobs)
    assert all(result.audio is not None for result in results)
    # 40-char chunks: the long text is 3 chunks. Its first chunk shares a call with
    # "Hi." (a first chunk runs without its own later chunks), the two design jobs
    # share the next, then the long text's other two chunks.
    assert counter.batches == [("clone", 2), ("design", 2), ("clone", 2)]


def test_a_bad_job_fails_alone(runtime: QwenRuntime, reference: VoiceReference) -> None:
    good, bad_language, empty = runtime.synthesize([
        clone_job(reference, "Fine."),
        clone_job(reference, "Nope.", language="Klingon"),
        SynthesisJob(kind="design", text="  ", language="English", instruct="x"),
    ])  # fmt: skip
    assert good.audio is not None
    assert bad_language.audio is None and "Klingon" in bad_language.error_message
    assert not bad_language.error_retryable
    assert empty.audio is None and "empty" in empty.error_message


def test_should_stop_ends_generation_between_batches(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CallCounter(runtime, monkeypatch)
    text = " ".join(f"Sentence number {n} is here." for n in range(20))
    with pytest.raises(GenerationStopped):
        runtime.synthesize([clone_job(reference, text)], should_stop=lambda: bool(counter.batches))
    assert len(counter.batches) == 1


def test_a_dropped_job_ends_between_batches_and_the_others_finish(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = CallCounter(runtime, monkeypatch)
    text = " ".join(f"Sentence number {n} is here." for n in range(12))
    kept, dropped = runtime.synthesize(
        [clone_job(reference, text), clone_job(reference, text, voice="voice-2")],
        dropped=lambda index: index == 1 and bool(counter.batches),
    )
    assert kept.audio is not None
    assert (dropped.audio, dropped.error_message, dropped.error_retryable) == (
        None,
        CANCELLED_MESSAGE,
        False,
    )
    assert counter.batches[:2] == [("clone", 2), ("clone", 4)]
    assert all(size <= 4 for _, size in counter.batches)


def test_out_of_memory_while_encoding_a_reference_is_retryable(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_of_memory = type("OutOfMemoryError", (RuntimeError,), {})

    def exhausted(**kwargs: Any) -> Any:
        raise out_of_memory("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runtime._models["clone"], "create_voice_clone_prompt", exhausted)
    (result,) = runtime.synthesize([clone_job(reference, "Hello.", voice="fresh-voice")])
    assert result.audio is None and result.error_retryable
    assert "out of GPU memory" in result.error_message


async def test_the_in_process_engine_sees_a_cancel_after_every_chunk(
    tiny_models: dict[str, Path],
) -> None:
    engine = QwenLocalEngine(
        LocalWeights.from_env({"UTTER_QWEN_MODEL_DIR": str(tiny_models["root"])})
    )
    assert (await engine.runtime()).settings.max_batch_items == 1


def test_missing_weights_name_what_to_download(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable) as caught:
        QwenLocalEngine(LocalWeights.from_env({"UTTER_QWEN_MODEL_DIR": str(tmp_path)}))
    message = str(caught.value)
    assert "huggingface-cli download Qwen/Qwen3-TTS-12Hz-0.6B-Base" in message
    assert "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign" in message
    assert str(tmp_path) in message


def test_weights_are_found_per_model_or_under_one_root(tiny_models: dict[str, Path]) -> None:
    under_root = LocalWeights.from_env({"UTTER_QWEN_MODEL_DIR": str(tiny_models["root"])})
    assert (under_root.base_dir, under_root.design_dir) == (
        tiny_models["base"],
        tiny_models["design"],
    )
    base_only = LocalWeights.from_env({"UTTER_QWEN_BASE_DIR": str(tiny_models["base"])})
    assert (base_only.base_dir, base_only.design_dir) == (tiny_models["base"], None)


class GenerateSpy:
    """Wraps a loaded model's generate method, keeping each call's arguments and the
    waveforms the real model returned."""

    def __init__(self, runtime: QwenRuntime, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[dict[str, Any], list[Any]]] = []
        method = "generate_voice_clone" if kind == "clone" else "generate_voice_design"
        model = runtime._models[kind]
        original = getattr(model, method)

        def spied(**kwargs: Any) -> Any:
            wavs, rate = original(**kwargs)
            self.calls.append((kwargs, list(wavs)))
            return wavs, rate

        monkeypatch.setattr(model, method, spied)


def test_each_chunk_runs_under_its_own_budget_and_a_chunk_at_it_is_reported(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = GenerateSpy(runtime, "clone", monkeypatch)
    uncapped = QwenRuntime(
        RuntimeSettings(base_model=None, design_model=None, max_chunk_chars=40, max_batch_items=4)
    )
    uncapped._models = runtime._models  # same loaded models, no cap on the budgets
    text = "Hi. This second chunk is much longer than the first one was."
    (result,) = uncapped.synthesize([clone_job(reference, text, voice="voice-budget")])
    audio = result.unwrap()
    # The first chunk alone, then the other two in one call with one max_new_tokens:
    # the larger of their budgets.
    (_, first), (kwargs, rest) = spy.calls
    returned = first + rest
    chunks = chunk_text(text, 40)
    budgets = [token_budget(chunk) for chunk in chunks]
    assert kwargs["max_new_tokens"] == max(budgets[1:]) and budgets[1] != budgets[2]
    upsample = runtime._models["clone"].model.speech_tokenizer.get_decode_upsample_rate()
    # A chunk whose codes filled its own budget (no end of speech) is listed and cut to it.
    expected = tuple(
        n
        for n, (wav, budget) in enumerate(zip(returned, budgets, strict=True))
        if len(wav) >= budget * upsample
    )
    assert audio.chunks_at_limit == expected
    kept = sum(
        min(len(wav), budget * upsample) for wav, budget in zip(returned, budgets, strict=True)
    )
    _, frames = wav_rate_and_frames(audio.wav)
    # Joins trim to zero crossings and overlap by a crossfade: a few ms per joint.
    assert abs(frames - kept) < audio.sample_rate // 10


def test_a_cap_in_the_settings_bounds_every_budget(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = GenerateSpy(runtime, "clone", monkeypatch)
    text = " ".join(f"Sentence number {n} is here." for n in range(6))
    (result,) = runtime.synthesize([clone_job(reference, text)])
    assert {kwargs["max_new_tokens"] for kwargs, _ in spy.calls} == {10}
    upsample = runtime._models["clone"].model.speech_tokenizer.get_decode_upsample_rate()
    returned = [wav for _, wavs in spy.calls for wav in wavs]
    assert result.unwrap().chunks_at_limit == tuple(
        n for n, wav in enumerate(returned) if len(wav) >= 10 * upsample
    )


def test_a_design_text_is_designed_once_and_its_later_chunks_cloned_from_it(
    runtime: QwenRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    design_spy = GenerateSpy(runtime, "design", monkeypatch)
    clone_spy = GenerateSpy(runtime, "clone", monkeypatch)
    prompts: list[tuple[int, str]] = []
    original = runtime._models["clone"].create_voice_clone_prompt

    def recorded(**kwargs: Any) -> Any:
        waveform, _rate = kwargs["ref_audio"]
        prompts.append((len(waveform), kwargs["ref_text"]))
        return original(**kwargs)

    monkeypatch.setattr(runtime._models["clone"], "create_voice_clone_prompt", recorded)
    text = "The first sentence is here. The second follows it. And then a third one."
    job = SynthesisJob(kind="design", text=text, language="English", instruct="a calm voice")
    (result,) = runtime.synthesize([job])
    assert result.audio is not None
    ((design_kwargs, designed),) = design_spy.calls
    first, *rest = chunk_text(text, 40)
    assert design_kwargs["text"] == [first]
    # The designed audio and its text became the clone prompt of every later chunk.
    assert prompts == [(len(designed[0]), first)]
    assert [chunk for kwargs, _ in clone_spy.calls for chunk in kwargs["text"]] == rest
    prompt_items = {id(p) for kwargs, _ in clone_spy.calls for p in kwargs["voice_clone_prompt"]}
    assert len(prompt_items) == 1


def test_a_chunk_limit_result_crosses_the_wire() -> None:
    from gpu.engine import Audio
    from gpu.jobs import SynthesisResult

    audio = Audio(wav=b"RIFF", sample_rate=24_000, duration_seconds=1.0, chunks_at_limit=(2,))
    assert SynthesisResult.from_wire(SynthesisResult(audio=audio).to_wire()).audio == audio
    old_app = {"wav": b"RIFF", "sample_rate": 24_000, "duration_seconds": 1.0}
    assert SynthesisResult.from_wire(old_app).audio == Audio(b"RIFF", 24_000, 1.0)
