"""The shared Qwen3-TTS runtime on tiny random models: real qwen-tts loading, clone
prompts, batched generation and chunk joining."""

from __future__ import annotations

import wave
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gpu.decoding import StepDecoder
from gpu.engine import CloneRequest, EngineUnavailable, VoiceReference
from gpu.jobs import CANCELLED_MESSAGE, SynthesisJob
from gpu.qwen_local import LocalWeights, QwenLocalEngine
from gpu.qwen_runtime import GenerationStopped, QwenBatch, QwenRuntime, RuntimeSettings
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


class Admissions:
    """Records every admission into a running batch (gpu.qwen_runtime.QwenBatch): the
    model, the chunks' texts and the budgets the decoder got; and every chunk that
    ended, with its frames and whether it was at its budget."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[tuple[str, int]] = []
        self.texts: list[tuple[str, list[str]]] = []
        self.budgets: list[int] = []
        self.ended: list[tuple[int, bool]] = []
        admit, decoder_admit, step = QwenBatch.admit, StepDecoder.admit, StepDecoder.step

        def admitted(batch: QwenBatch, chunks: Any) -> None:
            self.batches.append((batch.kind, len(chunks)))
            self.texts.append((batch.kind, [chunk.text for chunk in chunks]))
            admit(batch, chunks)

        def budgeted(decoder: StepDecoder, keys: Any, budgets: Any, prompts: Any) -> None:
            decoder_admit(decoder, keys, budgets, prompts)
            self.budgets.extend(budgets)

        def stepped(decoder: StepDecoder) -> Any:
            finished = step(decoder)
            self.ended.extend((len(f.codes), f.at_limit) for f in finished)
            return finished

        monkeypatch.setattr(QwenBatch, "admit", admitted)
        monkeypatch.setattr(StepDecoder, "admit", budgeted)
        monkeypatch.setattr(StepDecoder, "step", stepped)


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
    counter = Admissions(monkeypatch)
    long_text = "One short sentence. Another short sentence. A third one here. And a fourth."
    jobs = [
        clone_job(reference, long_text, voice="voice-a"),
        clone_job(reference, "Hi.", voice="voice-b", language="Auto"),
        SynthesisJob(kind="design", text="Hello.", language="English", instruct="a child"),
        SynthesisJob(kind="design", text="Bonjour.", language="French", instruct="an old man"),
    ]
    results = runtime.synthesize(jobs)
    assert all(result.audio is not None for result in results)
    # 40-char chunks: the long text is 3 chunks. At the first step two of them and
    # "Hi." take three of the clone model's four places (the last is kept for a
    # request with nothing running), the design jobs run beside them in their own
    # model's batch, and the long text's third chunk follows when a place frees.
    assert counter.batches == [("clone", 3), ("design", 2), ("clone", 1)]


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


def test_should_stop_ends_generation_between_steps(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Admissions(monkeypatch)
    text = " ".join(f"Sentence number {n} is here." for n in range(20))
    with pytest.raises(GenerationStopped):
        runtime.synthesize([clone_job(reference, text)], should_stop=lambda: bool(counter.batches))
    assert len(counter.batches) == 1


def test_a_dropped_job_ends_between_steps_and_the_others_finish(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Admissions(monkeypatch)
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
    # Both texts' chunks, round-robin, took three places; once the second was
    # dropped only the first's chunks were admitted.
    first, *later = counter.texts
    assert first == ("clone", [f"Sentence number {n} is here." for n in (0, 0, 1)])
    assert later and all(kind == "clone" for kind, _ in later)
    assert sum(len(texts) for _, texts in counter.texts) == 3 + 10  # the first's other 10
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


async def test_the_in_process_engine_batches_as_the_gpu_class_does(
    tiny_models: dict[str, Path],
) -> None:
    """Cancels are seen between decode steps, so the in-process engine needs no
    smaller batch than the Modal class to see them."""
    engine = QwenLocalEngine(
        LocalWeights.from_env({"UTTER_QWEN_MODEL_DIR": str(tiny_models["root"])})
    )
    settings = (await engine.runtime()).settings
    assert settings.max_batch_items == RuntimeSettings(None, None).max_batch_items


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


def test_each_chunk_runs_under_its_own_budget_and_a_chunk_at_it_is_reported(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Admissions(monkeypatch)
    uncapped = QwenRuntime(
        RuntimeSettings(base_model=None, design_model=None, max_chunk_chars=40, max_batch_items=4)
    )
    uncapped._models = runtime._models  # same loaded models, no cap on the budgets
    text = "Hi. This second chunk is much longer than the first one was."
    (result,) = uncapped.synthesize([clone_job(reference, text, voice="voice-budget")])
    audio = result.unwrap()
    chunks = chunk_text(text, 40)
    assert spy.texts == [("clone", chunks)]
    # Each chunk joined the batch with its own budget, and leaves at it at the latest.
    budgets = [token_budget(chunk) for chunk in chunks]
    assert spy.budgets == budgets and len(set(budgets)) == len(budgets)
    assert all(frames <= max(budgets) for frames, _ in spy.ended)
    # A chunk that used its whole budget (no end of speech) is listed.
    assert len(audio.chunks_at_limit) == sum(at_limit for _, at_limit in spy.ended)


def test_a_cap_in_the_settings_bounds_every_budget(
    runtime: QwenRuntime, reference: VoiceReference, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Admissions(monkeypatch)
    text = " ".join(f"Sentence number {n} is here." for n in range(6))
    (result,) = runtime.synthesize([clone_job(reference, text)])
    assert spy.budgets == [10] * 6
    assert all(frames <= 10 and at_limit == (frames == 10) for frames, at_limit in spy.ended)
    assert len(result.unwrap().chunks_at_limit) == sum(at_limit for _, at_limit in spy.ended)


def test_a_design_text_is_designed_once_and_its_later_chunks_cloned_from_it(
    runtime: QwenRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Admissions(monkeypatch)
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
    first, *rest = chunk_text(text, 40)
    assert spy.texts == [("design", [first]), ("clone", rest)]
    # The designed audio (its frames at 1920 samples each) and its text became the
    # clone prompt of every later chunk.
    designed_frames = spy.ended[0][0]
    assert prompts == [(designed_frames * 1920, first)]


def test_a_chunk_limit_result_crosses_the_wire() -> None:
    from gpu.engine import Audio
    from gpu.jobs import SynthesisResult

    audio = Audio(wav=b"RIFF", sample_rate=24_000, duration_seconds=1.0, chunks_at_limit=(2,))
    assert SynthesisResult.from_wire(SynthesisResult(audio=audio).to_wire()).audio == audio
    old_app = {"wav": b"RIFF", "sample_rate": 24_000, "duration_seconds": 1.0}
    assert SynthesisResult.from_wire(old_app).audio == Audio(b"RIFF", 24_000, 1.0)
