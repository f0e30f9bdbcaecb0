"""The Modal app module: what `modal deploy` would build (inspected offline, through
modal's own objects), and its methods run on a tiny model in this process."""

from __future__ import annotations

import os
import pickle
import re
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import modal
import pytest
from modal._utils.async_utils import synchronizer

from bench.tiny_qwen_model import CODEBOOK_SIZE
from gpu import modal_app
from gpu.audio import decode_wav, join_chunks
from gpu.engine import CloneRequest, VoiceReference
from gpu.jobs import CANCELLED_MESSAGE, CallControl, SynthesisJob, SynthesisResult
from gpu.modal_engine import CLASS_NAME, METHOD_NAME
from gpu.modal_transcriber import ASR_CLASS_NAME, ASR_METHOD_NAME
from gpu.qwen_asr_runtime import AsrRuntime, AsrRuntimeSettings
from gpu.qwen_runtime import QwenRuntime, RuntimeSettings
from gpu.reference import normalize_reference
from gpu.segments import PARTITION_TTL_SECONDS, SegmentAssembler
from gpu.text import speech_chunks
from gpu.transcription import TranscriptionJob, TranscriptionResult
from gpu.voice_prompts import fetch_reference
from tests.gpu.conftest import for_voice, store_reference
from tests.gpu.fake_modal import FakeDict, FakeQueue, FakeVolume, FakeVolumeMount

ROOT = Path(__file__).resolve().parents[2]


def function_info(obj: Any) -> Any:
    """Modal's description of a function (private API, pinned modal 1.6.x)."""
    return synchronizer._translate_in(obj)._function_info


def test_the_app_has_the_names_the_engine_looks_up() -> None:
    assert modal_app.app.name == modal_app.settings.app_name == "utter-tts"
    assert isinstance(modal_app.Qwen3TTS, modal.Cls)
    assert (modal_app.CLASS_NAME, modal_app.METHOD_NAME) == (CLASS_NAME, METHOD_NAME)
    assert modal_app.Qwen3TTS._get_user_cls().__name__ == CLASS_NAME


def test_the_gpu_class_has_gpu_volume_timeout_and_concurrent_inputs() -> None:
    info = function_info(modal_app.Qwen3TTS._get_class_service_function())
    assert info.gpus == [("A10G", 1)]
    assert info.timeout == 30 * 60
    assert info.method_names == [METHOD_NAME]
    # Requests are separate inputs feeding one chunk scheduler, not a @modal.batched call.
    assert info.batching_info is None
    assert info.concurrency_info.max_inputs == modal_app.settings.max_inputs == 32
    assert info.volumes["/weights"].name == "utter-qwen-weights"
    assert isinstance(modal_app.weights_volume, modal.Volume)
    # Finished chunks leave through a Queue the engine reads (a spawned call cannot stream).
    assert isinstance(modal_app.segments, modal.Queue)


def test_the_download_function_writes_into_the_same_volume_without_a_gpu() -> None:
    info = function_info(modal_app.download_weights)
    assert info.gpus in (None, [])
    assert info.volumes["/weights"].name == "utter-qwen-weights"


def test_settings_come_from_the_environment_and_reach_the_containers() -> None:
    chosen = modal_app.DeploymentSettings.from_env({
        "UTTER_MODAL_APP": "utter-staging",
        "UTTER_MODAL_GPU": "L4",
        "UTTER_QWEN_BASE_MODEL": "Qwen/Qwen3-TTS-12Hz-1.7B-Base",
    })  # fmt: skip
    assert (chosen.app_name, chosen.gpu, chosen.base_model) == (
        "utter-staging",
        "L4",
        "Qwen/Qwen3-TTS-12Hz-1.7B-Base",
    )
    env = chosen.container_env()
    assert env["UTTER_QWEN_BASE_MODEL"] == "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert modal_app.DeploymentSettings.from_env(env) == chosen
    assert chosen.model_dir(chosen.base_model) == "/weights/Qwen/Qwen3-TTS-12Hz-1.7B-Base"


def test_the_image_pins_qwen_tts_and_agrees_with_the_qwen_extra() -> None:
    assert modal_app.QWEN_TTS_PACKAGE == "qwen-tts==0.1.1"
    assert isinstance(modal_app.image, modal.Image)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["qwen"]

    def name(requirement: str) -> str:
        return re.split(r"[<>=\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    image = {name(r): r for r in modal_app.PIP_PACKAGES}
    for requirement in extra:
        assert name(requirement) in image, f"{requirement} is missing from the Modal image"
        if "==" in requirement:
            assert image[name(requirement)] == requirement
    assert image["torchaudio"] == "torchaudio==2.9.1" and image["torch"] == "torch==2.9.1"


def test_loading_without_weights_names_the_download_command() -> None:
    worker = modal_app.Qwen3TTS._get_user_cls()()
    with pytest.raises(RuntimeError, match=r"modal run gpu/modal_app.py::download_weights"):
        worker.load()


def design_runtime(tiny_models: dict[str, Path]) -> QwenRuntime:
    runtime = QwenRuntime(
        RuntimeSettings(
            base_model=None,
            design_model=str(tiny_models["design"]),
            generate_options={"max_new_tokens": 8},
        )
    )
    runtime.load()
    return runtime


def test_concurrent_inputs_share_the_scheduler_and_each_gets_its_own_answer(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = modal_app.Qwen3TTS._get_user_cls()()
    worker.runtime = design_runtime(tiny_models)
    worker.scheduler = modal_app.ChunkScheduler(worker.runtime)
    monkeypatch.setattr(modal_app, "control", FakeDict())
    synthesize = synchronizer._translate_in(type(worker).__dict__["synthesize"]).raw_f
    jobs = [
        SynthesisJob(
            kind="design", text="Hello.", language="English", instruct="a bright voice"
        ).to_wire(),
        {"kind": "sing"},
        SynthesisJob(
            kind="design", text="Hallo.", language="German", instruct="a calm voice"
        ).to_wire(),
    ]
    worker.scheduler.start()
    try:
        # Modal runs each input of a sync @modal.concurrent method in its own thread.
        with ThreadPoolExecutor(max_workers=3) as inputs:
            answers = list(inputs.map(lambda job: synthesize(worker, job), jobs))
    finally:
        worker.scheduler.close()
    first, malformed, third = (SynthesisResult.from_wire(r) for r in answers)
    assert first.audio is not None and third.audio is not None
    assert first.audio.sample_rate == 24_000
    assert malformed.audio is None and "malformed" in malformed.error_message


def test_a_cancelled_request_is_dropped_and_the_others_still_run(
    tiny_models: dict[str, Path],
) -> None:
    """The per-request cancellation the engine relies on (gpu/jobs.py CallControl):
    every request is marked started, and one whose flag is set gets a "cancelled"
    result while the others are generated."""
    scheduler = modal_app.ChunkScheduler(design_runtime(tiny_models))
    store = FakeDict()
    store.put(CallControl.cancel_key("dropped"), 1.0)
    jobs = [
        SynthesisJob(
            kind="design", text="Hello.", language="English", instruct="a calm voice", ticket=t
        ).to_wire()
        for t in ("kept", "dropped")
    ]
    scheduler.start()
    try:
        with ThreadPoolExecutor(max_workers=2) as inputs:
            answers = list(inputs.map(lambda j: modal_app.run_request(scheduler, j, store), jobs))
    finally:
        scheduler.close()
    kept, dropped = (SynthesisResult.from_wire(r) for r in answers)
    assert kept.audio is not None
    assert (dropped.audio, dropped.error_message) == (None, CANCELLED_MESSAGE)
    assert not dropped.error_retryable
    assert {CallControl.started_key("kept"), CallControl.started_key("dropped")} <= set(store.data)


def test_a_cancel_set_while_a_request_runs_is_read_by_its_own_thread(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler asks `cancelled` between decode steps on the model's thread, where
    a Dict read per step would stall the GPU: each input's own thread reads its flag
    (every CANCEL_POLL_SECONDS) and the scheduler sees a local flag. A flag set while
    the request runs ends it; the model thread never reads the Dict."""
    monkeypatch.setattr(modal_app, "CANCEL_POLL_SECONDS", 0.02)
    runtime = QwenRuntime(
        RuntimeSettings(
            base_model=None,
            design_model=str(tiny_models["design"]),
            max_chunk_chars=30,
            generate_options={"max_new_tokens": 400, "eos_token_id": CODEBOOK_SIZE + 1023},
        )
    )
    runtime.load()
    scheduler = modal_app.ChunkScheduler(runtime)
    store = FakeDict()
    readers: set[str] = set()
    contains = store.contains

    class WatchedContains:
        def __call__(self, key: Any) -> bool:
            readers.add(threading.current_thread().name)
            return bool(contains(key))

    store.contains = WatchedContains()
    text = " ".join(f"Sentence number {n} is here." for n in range(20))
    wire = SynthesisJob(
        kind="design", text=text, language="English", instruct="calm", ticket="long"
    ).to_wire()
    scheduler.start()
    try:
        with ThreadPoolExecutor(max_workers=1) as inputs:
            answer = inputs.submit(modal_app.run_request, scheduler, wire, store)
            deadline = time.monotonic() + 60
            while CallControl.started_key("long") not in store.data:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            store.data[CallControl.cancel_key("long")] = time.time()
            result = SynthesisResult.from_wire(answer.result(timeout=120))
    finally:
        scheduler.close()
    assert (result.audio, result.error_message) == (None, CANCELLED_MESSAGE)
    assert "chunk-scheduler" not in readers


class SteadyStream:
    """Stands in for the chunk scheduler (not for Modal) where only `run_request`'s
    reading of the cancel flag is under test: it reports a segment every 20 ms, far
    more often than the flag is read, until `cancelled()` says so."""

    def submit(self, job: SynthesisJob, *, cancelled: Any, on_segment: Any) -> Any:
        from concurrent.futures import Future

        request: Any = type("Request", (), {"future": Future()})()

        def stream() -> None:
            for index in range(250):
                if cancelled():
                    request.future.set_result(
                        SynthesisResult.failure(CANCELLED_MESSAGE, retryable=False)
                    )
                    return
                if on_segment is not None:
                    on_segment(index, 250, None)
                time.sleep(0.02)
            request.future.set_result(SynthesisResult.failure("ran to the end", retryable=False))

        threading.Thread(target=stream, daemon=True).start()
        return request


def test_a_cancel_is_read_on_time_while_segments_keep_coming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(modal_app, "CANCEL_POLL_SECONDS", 0.1)
    monkeypatch.setattr(modal_app, "to_parts", lambda segment: [])
    store, segments = FakeDict(), FakeQueue()
    wire = SynthesisJob(
        kind="design", text="Hello.", language="English", instruct="calm", ticket="steady"
    ).to_wire()
    threading.Timer(0.3, lambda: store.put(CallControl.cancel_key("steady"), 1.0)).start()
    started = time.monotonic()
    answer = SynthesisResult.from_wire(
        modal_app.run_request(cast(Any, SteadyStream()), wire, store, segments)
    )
    assert answer.error_message == CANCELLED_MESSAGE
    assert time.monotonic() - started < 2.5  # not the stream's 5 s


def test_the_asr_class_has_the_names_the_transcriber_looks_up_and_batches() -> None:
    assert (modal_app.ASR_CLASS_NAME, modal_app.ASR_METHOD_NAME) == (
        ASR_CLASS_NAME,
        ASR_METHOD_NAME,
    )
    assert modal_app.Qwen3ASR._get_user_cls().__name__ == ASR_CLASS_NAME
    info = function_info(modal_app.Qwen3ASR._get_class_service_function())
    assert info.method_names == [ASR_METHOD_NAME]
    assert (info.batching_info.max_batch_size, info.batching_info.wait_ms) == (8, 150)
    assert info.volumes["/weights"].name == "utter-qwen-weights"
    # One download function fills the volume with the recogniser and aligner too.
    assert modal_app.settings.all_models()[2:] == (
        "Qwen/Qwen3-ASR-1.7B",
        "Qwen/Qwen3-ForcedAligner-0.6B",
    )
    assert modal_app.QWEN_ASR_PACKAGE == "qwen-asr==0.0.6"


def test_the_asr_class_without_weights_names_the_download_command() -> None:
    worker = modal_app.Qwen3ASR._get_user_cls()()
    with pytest.raises(RuntimeError, match=r"modal run gpu/modal_app.py::download_weights"):
        worker.load()


def test_the_batched_transcribe_method_runs_a_batch_on_the_real_qwen_asr_code(
    tiny_asr_model: Path, recordings: Any
) -> None:
    worker = modal_app.Qwen3ASR._get_user_cls()()
    worker.runtime = AsrRuntime(AsrRuntimeSettings(model=str(tiny_asr_model), max_new_tokens=8))
    worker.runtime.load()
    transcribe = synchronizer._translate_in(type(worker).__dict__["transcribe"]).raw_f
    wav = normalize_reference(recordings("speech_wav")).wav
    jobs = [
        TranscriptionJob(wav, "English").to_wire(),
        {"audio_wav": "not bytes"},
        TranscriptionJob(wav, "Auto").to_wire(),
    ]
    first, malformed, third = (TranscriptionResult.from_wire(r) for r in transcribe(worker, jobs))
    assert first.transcript is not None and first.transcript.language == "English"
    assert first.transcript.text and third.transcript is not None
    assert malformed.transcript is None and "malformed" in malformed.error_message


# A design text of several chunks, streamed under `ticket`.
STREAMED_TEXT = " ".join(
    f"Sentence number {n} is here to make the text long enough." for n in range(8)
)


def streamed_job(ticket: str) -> dict[str, Any]:
    return SynthesisJob(
        kind="design",
        text=STREAMED_TEXT,
        language="English",
        instruct="a calm voice",
        ticket=ticket,
    ).to_wire()


def test_each_finished_chunk_is_put_in_the_requests_partition_before_the_answer(
    tiny_models: dict[str, Path],
) -> None:
    """Streamed audio on the GPU side (gpu/segments.py): every segment of a request is
    put, in order, into its ticket's partition of the segments Queue before the
    request answers, and the answer is the join of those segments."""
    scheduler = modal_app.ChunkScheduler(design_runtime(tiny_models))
    store, segments = FakeDict(), FakeQueue()
    wire = streamed_job("streamed")
    scheduler.start()
    try:
        answer = SynthesisResult.from_wire(modal_app.run_request(scheduler, wire, store, segments))
    finally:
        scheduler.close()
    assert answer.audio is not None
    assembler = SegmentAssembler()
    parts = [pickle.loads(item) for item in segments.partitions[b"streamed"]]
    reported = [s for s in (assembler.add(part) for part in parts) if s is not None]
    # Every chunk, the first in two parts (its first frames, then the rest).
    assert [s.index for s in reported] == list(range(len(speech_chunks(STREAMED_TEXT)) + 1))
    assert {s.count for s in reported} == {len(reported)} and len(reported) > 2
    joined = join_chunks([decode_wav(s.audio.wav).samples for s in reported], 24_000)
    assert decode_wav(answer.audio.wav).samples == joined
    assert segments.ttls[b"streamed"] == PARTITION_TTL_SECONDS


def test_a_full_segment_partition_stops_the_stream_not_the_answer(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No listener reads the partition (it stopped) and it fills: a put waits for room
    only so long, then the request stops streaming and still answers with all its
    audio (the fake, as modal's queue.py, waits forever on a put with no timeout)."""
    monkeypatch.setattr(modal_app, "SEGMENT_PUT_SECONDS", 0.01)
    scheduler = modal_app.ChunkScheduler(design_runtime(tiny_models))
    segments = FakeQueue()
    segments.PARTITION_ITEM_LIMIT = 1
    wire = streamed_job("unread")
    answers: list[dict[str, Any]] = []
    scheduler.start()
    try:
        thread = threading.Thread(
            target=lambda: answers.append(
                modal_app.run_request(scheduler, wire, FakeDict(), segments)
            ),
            daemon=True,
        )
        thread.start()
        thread.join(timeout=60)
    finally:
        scheduler.close()
    assert not thread.is_alive(), "the request waits for room in its partition for ever"
    answer = SynthesisResult.from_wire(answers[0])
    assert answer.audio is not None and decode_wav(answer.audio.wav).samples
    assert len(segments.partitions[b"unread"]) == 1


def test_a_request_without_a_ticket_streams_nothing(tiny_models: dict[str, Path]) -> None:
    scheduler = modal_app.ChunkScheduler(design_runtime(tiny_models))
    segments = FakeQueue()
    wire = SynthesisJob(kind="design", text="Hello.", language="English", instruct="calm").to_wire()
    scheduler.start()
    try:
        answer = SynthesisResult.from_wire(
            modal_app.run_request(scheduler, wire, FakeDict(), segments)
        )
    finally:
        scheduler.close()
    assert answer.audio is not None
    assert segments.partitions == {}


def test_the_gpu_class_and_the_prune_function_mount_the_prompt_volume() -> None:
    info = function_info(modal_app.Qwen3TTS._get_class_service_function())
    assert info.volumes[modal_app.PROMPTS_DIR].name == "utter-voice-prompts"
    prune = function_info(modal_app.prune_voice_prompts)
    assert prune.volumes[modal_app.PROMPTS_DIR].name == "utter-voice-prompts"
    assert prune.gpus in (None, [])


def clone_wire(reference: VoiceReference, text: str) -> dict[str, Any]:
    return SynthesisJob.for_clone(CloneRequest(text, "English", reference)).to_wire()


def container(
    tiny_models: dict[str, Path], volume: FakeVolume, folder: Path
) -> tuple[QwenRuntime, FakeVolumeMount]:
    """A GPU container's runtime as `Qwen3TTS.load` builds it, on its own mount of the
    prompt volume."""
    mount = volume.mount(folder)
    runtime = QwenRuntime(
        RuntimeSettings(
            base_model=str(tiny_models["base"]),
            design_model=None,
            generate_options={"max_new_tokens": 8},
        ),
        prompt_store=modal_app.prompt_store(mount, str(folder)),
    )
    runtime.load()
    return runtime, mount


def run_clone(runtime: QwenRuntime, wire: dict[str, Any]) -> SynthesisResult:
    scheduler = modal_app.ChunkScheduler(runtime)
    scheduler.start()
    try:
        return SynthesisResult.from_wire(modal_app.run_request(scheduler, wire, FakeDict()))
    finally:
        scheduler.close()


def test_a_prompt_is_built_once_from_storage_and_loaded_by_other_containers(
    tiny_models: dict[str, Path], reference: VoiceReference, tmp_path: Path
) -> None:
    volume = FakeVolume()
    first, _ = container(tiny_models, volume, tmp_path / "first")
    # Started before the first container committed: its mount lacks the prompt.
    second, second_mount = container(tiny_models, volume, tmp_path / "second")
    voice = for_voice(reference, "voice-shared")

    assert run_clone(first, clone_wire(voice, "Hello.")).audio is not None
    assert first.references_encoded == 1
    key = f"voice-shared/{voice.sha256}.pt"
    assert list(volume.committed) == [key]
    assert key not in second_mount.files()

    def no_fetching(wanted: VoiceReference) -> bytes:
        raise AssertionError("the committed prompt should have been loaded")

    second.fetch = no_fetching
    assert run_clone(second, clone_wire(voice, "Hello again.")).audio is not None
    assert (second.prompts_loaded, second.references_encoded) == (1, 0)
    assert key in second_mount.files()  # it reloaded the volume on the miss


def test_a_container_that_cannot_reload_rebuilds_the_prompt_from_storage(
    tiny_models: dict[str, Path], reference: VoiceReference, tmp_path: Path
) -> None:
    volume = FakeVolume()
    runtime, mount = container(tiny_models, volume, tmp_path / "busy")
    with (mount.folder / "open-elsewhere").open("w"):
        with pytest.raises(RuntimeError, match="open files"):
            mount.reload()
        result = run_clone(runtime, clone_wire(for_voice(reference, "voice-busy"), "Hello."))
    assert result.audio is not None and runtime.references_encoded == 1


def test_a_changed_reference_retires_the_old_prompt_and_the_prune_retires_old_voices(
    tiny_models: dict[str, Path], reference: VoiceReference, tmp_path: Path
) -> None:
    volume = FakeVolume()
    runtime, mount = container(tiny_models, volume, tmp_path / "gpu")
    run_clone(runtime, clone_wire(for_voice(reference, "voice-kept"), "Hello."))
    run_clone(runtime, clone_wire(for_voice(reference, "voice-deleted"), "Hello."))
    changed = store_reference(tmp_path, fetch_reference(reference) + b"\x00\x00", "voice-kept")
    run_clone(runtime, clone_wire(changed, "Hello."))
    assert sorted(volume.committed) == sorted(
        [f"voice-kept/{changed.sha256}.pt", f"voice-deleted/{reference.sha256}.pt"]
    )
    # The deleted voice is never named again; its file ages past the limit.
    old = mount.folder / f"voice-deleted/{reference.sha256}.pt"
    month_ago = time.time() - 31 * 24 * 3600
    os.utime(old, (month_ago, month_ago))
    store = modal_app.prompt_store(mount, str(mount.folder))
    assert store.prune(modal_app.PROMPT_MAX_AGE_SECONDS) == [old]
    assert list(volume.committed) == [f"voice-kept/{changed.sha256}.pt"]
