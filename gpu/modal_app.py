"""The Modal app that serves Qwen3-TTS on GPUs. Deploy with `modal deploy gpu/modal_app.py`
and fill the weights volume once with `modal run gpu/modal_app.py::download_weights`
(docs/gpu.md walks through it).

Settings are read from the environment when this file is imported, i.e. on the
machine that runs `modal deploy`, and baked into the image's environment so the
containers import the same values:

- `UTTER_MODAL_APP` (default `utter-tts`): the app name the listener looks up;
- `UTTER_MODAL_GPU` (default `A10G`): Modal GPU type (`T4`, `L4`, `A10G`, `A100`, `H100`...);
- `UTTER_QWEN_BASE_MODEL` (default the 0.6B Base; `Qwen/Qwen3-TTS-12Hz-1.7B-Base` for
  the larger one) and `UTTER_QWEN_DESIGN_MODEL`;
- `UTTER_MODAL_MAX_CONTAINERS`, `UTTER_MODAL_SCALEDOWN_SECONDS`, `UTTER_MODAL_MAX_ROWS`
  (chunks in each speech model's running batch), `UTTER_MODAL_MAX_BATCH` (recordings
  per ASR call), `UTTER_MODAL_MAX_INPUTS` (speech requests in flight per container).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import modal

from gpu.engine import Audio, Segment
from gpu.jobs import CANCELLED_MESSAGE, CallControl, SynthesisJob, SynthesisResult
from gpu.qwen_asr_runtime import (
    DEFAULT_ALIGNER_MODEL,
    DEFAULT_ASR_MODEL,
    AsrRuntime,
    AsrRuntimeSettings,
)
from gpu.qwen_runtime import DEFAULT_BASE_MODEL, DEFAULT_DESIGN_MODEL, QwenRuntime, RuntimeSettings
from gpu.scheduler import ChunkScheduler
from gpu.segments import PARTITION_TTL_SECONDS, queue_name, to_parts
from gpu.transcription import TranscriptionJob, TranscriptionResult
from gpu.voice_prompts import PROMPT_MAX_AGE_SECONDS, PromptStore

log = logging.getLogger(__name__)

WEIGHTS_DIR = "/weights"
# Voice clone prompts, one file per (voice id, reference hash), shared by every
# container through a Volume (gpu/voice_prompts.py).
PROMPTS_DIR = "/prompts"
CLASS_NAME = "Qwen3TTS"
METHOD_NAME = "synthesize"
DOWNLOAD_FUNCTION_NAME = "download_weights"

# What the 12 Hz Qwen3-TTS path imports (qwen-tts itself goes in with --no-deps: its
# metadata also pulls gradio, which only its demo uses).
APT_PACKAGES = ("ffmpeg", "sox", "libsndfile1")
PIP_PACKAGES = (
    "torch==2.9.1",
    "torchaudio==2.9.1",
    "transformers==4.57.3",
    "accelerate==1.12.0",
    "huggingface_hub>=0.34,<1.0",
    "numpy>=1.26,<3",
    "librosa>=0.10,<0.12",
    "soundfile>=0.12,<0.15",
    "sox>=1.5,<1.6",
    "onnxruntime>=1.18,<1.33",
    "einops>=0.8,<0.9",
    # The word splitters qwen-asr's forced aligner imports.
    "nagisa==0.2.11",
    "soynlp==0.0.493",
)
QWEN_TTS_PACKAGE = "qwen-tts==0.1.1"
# Qwen3-ASR's package, also --no-deps (its metadata pulls gradio and flask, and pins
# transformers 4.57.6; it runs on qwen-tts's 4.57.3, see docs/gpu.md).
QWEN_ASR_PACKAGE = "qwen-asr==0.0.6"
ASR_CLASS_NAME = "Qwen3ASR"
ASR_METHOD_NAME = "transcribe"


@dataclass(frozen=True)
class DeploymentSettings:
    app_name: str = "utter-tts"
    gpu: str = "A10G"
    base_model: str = DEFAULT_BASE_MODEL
    design_model: str = DEFAULT_DESIGN_MODEL
    volume_name: str = "utter-qwen-weights"
    prompts_volume_name: str = "utter-voice-prompts"
    job_timeout_seconds: int = 30 * 60  # the old backend's limit; long texts take minutes
    scaledown_seconds: int = 5 * 60  # keep a warm GPU briefly: cold starts cost 30-110 s
    max_containers: int = 4
    max_batch_size: int = 8  # recordings per @modal.batched ASR call
    # Chunks in each speech model's running batch (gpu/decoding.py). A row costs its
    # KV cache, about 100 MB for a 17 s chunk of the 1.7B model in bf16, and a decode
    # step of 16 rows costs the GPU about what one row does (it is bound by reading
    # the weights), so 16 rows of both models fit an A10G beside the weights.
    max_rows: int = 16
    # Speech requests one container takes at once (@modal.concurrent): they all feed
    # one chunk scheduler, so more inputs mean fuller batches, not more memory (only
    # max_rows chunks per model are ever generated together).
    max_inputs: int = 32
    batch_wait_ms: int = 150  # how long a lone request waits for company
    asr_model: str = DEFAULT_ASR_MODEL
    aligner_model: str = DEFAULT_ALIGNER_MODEL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeploymentSettings:
        defaults = cls()
        return cls(
            app_name=env.get("UTTER_MODAL_APP", defaults.app_name),
            gpu=env.get("UTTER_MODAL_GPU", defaults.gpu),
            base_model=env.get("UTTER_QWEN_BASE_MODEL", defaults.base_model),
            design_model=env.get("UTTER_QWEN_DESIGN_MODEL", defaults.design_model),
            volume_name=env.get("UTTER_MODAL_VOLUME", defaults.volume_name),
            prompts_volume_name=env.get("UTTER_MODAL_PROMPTS_VOLUME", defaults.prompts_volume_name),
            max_containers=int(env.get("UTTER_MODAL_MAX_CONTAINERS", defaults.max_containers)),
            scaledown_seconds=int(
                env.get("UTTER_MODAL_SCALEDOWN_SECONDS", defaults.scaledown_seconds)
            ),
            max_batch_size=int(env.get("UTTER_MODAL_MAX_BATCH", defaults.max_batch_size)),
            max_rows=int(env.get("UTTER_MODAL_MAX_ROWS", defaults.max_rows)),
            max_inputs=int(env.get("UTTER_MODAL_MAX_INPUTS", defaults.max_inputs)),
            asr_model=env.get("UTTER_QWEN_ASR_MODEL", defaults.asr_model),
            aligner_model=env.get("UTTER_QWEN_ALIGNER_MODEL", defaults.aligner_model),
        )

    def container_env(self) -> dict[str, str]:
        return {
            "UTTER_MODAL_APP": self.app_name,
            "UTTER_MODAL_GPU": self.gpu,
            "UTTER_QWEN_BASE_MODEL": self.base_model,
            "UTTER_QWEN_DESIGN_MODEL": self.design_model,
            "UTTER_MODAL_VOLUME": self.volume_name,
            "UTTER_MODAL_PROMPTS_VOLUME": self.prompts_volume_name,
            "UTTER_MODAL_MAX_CONTAINERS": str(self.max_containers),
            "UTTER_MODAL_SCALEDOWN_SECONDS": str(self.scaledown_seconds),
            "UTTER_MODAL_MAX_BATCH": str(self.max_batch_size),
            "UTTER_MODAL_MAX_ROWS": str(self.max_rows),
            "UTTER_MODAL_MAX_INPUTS": str(self.max_inputs),
            "UTTER_QWEN_ASR_MODEL": self.asr_model,
            "UTTER_QWEN_ALIGNER_MODEL": self.aligner_model,
            # Weights come from the volume only; never reach for the hub at run time.
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }

    def model_dir(self, model_id: str) -> str:
        return f"{WEIGHTS_DIR}/{model_id}"

    def all_models(self) -> tuple[str, ...]:
        """Every model the volume must hold: speech, then recognition."""
        return (self.base_model, self.design_model, self.asr_model, self.aligner_model)


settings = DeploymentSettings.from_env(os.environ)

image = (
    modal.Image.debian_slim(python_version="3.12")
    .apt_install(*APT_PACKAGES)
    .pip_install(*PIP_PACKAGES)
    .pip_install(QWEN_TTS_PACKAGE, extra_options="--no-deps")
    .pip_install(QWEN_ASR_PACKAGE, extra_options="--no-deps")
    .env(settings.container_env())
    .add_local_python_source("gpu")
)
weights_volume = modal.Volume.from_name(settings.volume_name, create_if_missing=True)
prompts_volume = modal.Volume.from_name(settings.prompts_volume_name, create_if_missing=True)
# Per-request start marks and cancellation flags (gpu/jobs.py CallControl).
control = modal.Dict.from_name(CallControl.dict_name(settings.app_name), create_if_missing=True)
# Each request's finished chunks, while it runs (gpu/segments.py).
segments = modal.Queue.from_name(queue_name(settings.app_name), create_if_missing=True)
app = modal.App(settings.app_name, image=image)


@app.function(volumes={WEIGHTS_DIR: weights_volume}, timeout=60 * 60, env={"HF_HUB_OFFLINE": "0"})
def download_weights(force: bool = False) -> list[str]:
    """Fill the volume with the configured models (once; `force` re-downloads)."""
    from huggingface_hub import snapshot_download

    fetched = []
    for model_id in settings.all_models():
        target = settings.model_dir(model_id)
        if not force and os.path.isfile(f"{target}/config.json"):
            print(f"{model_id}: already in the volume at {target}")
            continue
        print(f"{model_id}: downloading into {target}")
        snapshot_download(repo_id=model_id, local_dir=target)
        fetched.append(model_id)
    weights_volume.commit()
    return fetched


def prompt_store(volume: Any, root: str = PROMPTS_DIR) -> PromptStore:
    """The clone prompts on the mounted Volume: a miss reloads it (another container
    may have committed the prompt since this one mounted it) and a new prompt is
    committed, since a Volume shows other containers' writes only after a commit and a
    reload (modal 1.6.4, modal/volume.py `_Volume.commit`, `_Volume.reload`)."""
    return PromptStore(Path(root), refresh=volume.reload, publish=volume.commit)


@app.function(volumes={PROMPTS_DIR: prompts_volume}, schedule=modal.Period(days=1))
def prune_voice_prompts(max_age_seconds: float = PROMPT_MAX_AGE_SECONDS) -> int:
    """Retires prompt files older than `max_age_seconds`: those of deleted voices (never
    named by a request again) and of voices unused since; a live voice's next request
    rebuilds its prompt from Storage."""
    return len(prompt_store(prompts_volume).prune(max_age_seconds))


@app.cls(
    gpu=settings.gpu,
    volumes={WEIGHTS_DIR: weights_volume, PROMPTS_DIR: prompts_volume},
    timeout=settings.job_timeout_seconds,
    scaledown_window=settings.scaledown_seconds,
    max_containers=settings.max_containers,
)
# Each request is its own input (in its own thread: a sync method under
# @modal.concurrent, modal 1.6.4 _partial_function.py `_concurrent`), and all of them
# feed one chunk scheduler: a model call takes chunks of every request in flight, clone
# and design alike, and each input returns when its own chunks are done.
@modal.concurrent(max_inputs=settings.max_inputs)
class Qwen3TTS:
    runtime: QwenRuntime
    scheduler: ChunkScheduler

    @modal.enter()
    def load(self) -> None:
        for model_id in (settings.base_model, settings.design_model):
            if not os.path.isfile(f"{settings.model_dir(model_id)}/config.json"):
                raise RuntimeError(
                    f"{model_id} is not in the weights volume {settings.volume_name!r}: "
                    f"run `modal run gpu/modal_app.py::{DOWNLOAD_FUNCTION_NAME}` once"
                )
        self.runtime = QwenRuntime(
            RuntimeSettings(
                base_model=settings.model_dir(settings.base_model),
                design_model=settings.model_dir(settings.design_model),
                device="cuda",
                dtype="bfloat16",
                attn_implementation="sdpa",
                max_batch_items=settings.max_rows,
            ),
            prompt_store=prompt_store(prompts_volume),
        )
        self.runtime.load()
        self.scheduler = ChunkScheduler(self.runtime)
        self.scheduler.start()

    @modal.exit()
    def stop(self) -> None:
        self.scheduler.close()

    # A request is never cancelled through Modal: its caller sets a flag that the
    # scheduler checks between model calls, dropping that request's chunks only.
    @modal.method()
    def synthesize(self, job: dict[str, Any]) -> dict[str, Any]:
        return run_request(self.scheduler, job, control, segments)


# How long a segment waits for room in its partition (5,000 items, 64 MiB: modal
# queue.py `_Queue`) when no listener reads it; with no timeout a put to a full
# partition waits forever (`_put_many_blocking`), holding this input until Modal's
# timeout and losing its answer. On timeout the request stops streaming and still
# answers with the whole audio.
SEGMENT_PUT_SECONDS = 30.0

# How often a running request's thread reads its cancel flag from the control Dict.
CANCEL_POLL_SECONDS = 1.0


def _next(
    finished: queue.SimpleQueue[Segment | None], timeout: float
) -> tuple[bool, Segment | None]:
    """(True, the next item) if one came within `timeout` seconds, else (False, None)."""
    try:
        return True, finished.get(timeout=timeout)
    except queue.Empty:
        return False, None


def run_request(
    scheduler: ChunkScheduler, wire: dict[str, Any], store: Any, segments: Any = None
) -> dict[str, Any]:
    """One wire request through the scheduler, honouring the control Dict `store`: the
    request is marked started, and once its cancellation flag is set (before it runs,
    or while it runs: read every CANCEL_POLL_SECONDS) its rows leave the batch at the
    next step and it answers "cancelled". Each finished
    chunk is put into the Queue `segments`, in the ticket's partition (gpu/segments.py),
    from this input's thread while the model goes on; the answer comes only after
    every segment was put."""
    try:
        job = SynthesisJob.from_wire(wire)
    except ValueError:
        return SynthesisResult.failure("malformed job", retryable=False).to_wire()
    ticket = job.ticket
    if ticket:
        store.put(CallControl.started_key(ticket), time.time())

    # The scheduler asks `cancelled` between decode steps, on the model's thread:
    # it reads a flag, and this input's own thread polls the Dict for it (a remote
    # call per request per step would stall the GPU).
    flagged = threading.Event()

    def poll_cancel() -> None:
        try:
            if ticket and store.contains(CallControl.cancel_key(ticket)):
                flagged.set()
        except Exception:
            log.exception("reading the cancel flag of %s failed", ticket)

    poll_cancel()
    finished: queue.SimpleQueue[Segment | None] = queue.SimpleQueue()

    def segment_done(index: int, count: int, audio: Audio) -> None:
        # On the model's thread: handed over, never put to Modal from there.
        finished.put(Segment(index, count, audio))

    streaming = bool(ticket) and segments is not None
    request = scheduler.submit(
        job, cancelled=flagged.is_set, on_segment=segment_done if streaming else None
    )
    # Segments are reported before the future resolves, so this comes after them.
    request.future.add_done_callback(lambda _: finished.put(None))
    next_poll = time.monotonic() + CANCEL_POLL_SECONDS
    while True:
        arrived, segment = _next(finished, max(0.0, next_poll - time.monotonic()))
        # On a deadline, not on a quiet queue: segments may come faster than it.
        if time.monotonic() >= next_poll:
            poll_cancel()
            next_poll = time.monotonic() + CANCEL_POLL_SECONDS
        if not arrived:
            continue
        if segment is None:
            break
        if not streaming:
            continue
        try:
            for item in to_parts(segment):
                segments.put(
                    item,
                    timeout=SEGMENT_PUT_SECONDS,
                    partition=ticket,
                    partition_ttl=PARTITION_TTL_SECONDS,
                )
        except Exception:
            # The final answer still carries the audio; stop streaming this request.
            log.exception("putting segment %d of %s failed", segment.index, ticket)
            streaming = False
    return request.future.result().to_wire()


@app.cls(
    gpu=settings.gpu,
    volumes={WEIGHTS_DIR: weights_volume},
    timeout=settings.job_timeout_seconds,
    scaledown_window=settings.scaledown_seconds,
    max_containers=settings.max_containers,
)
class Qwen3ASR:
    """Transcribes reference recordings (gpu/modal_transcriber.py is its client)."""

    runtime: AsrRuntime

    @modal.enter()
    def load(self) -> None:
        for model_id in (settings.asr_model, settings.aligner_model):
            if not os.path.isfile(f"{settings.model_dir(model_id)}/config.json"):
                raise RuntimeError(
                    f"{model_id} is not in the weights volume {settings.volume_name!r}: "
                    f"run `modal run gpu/modal_app.py::{DOWNLOAD_FUNCTION_NAME}` once"
                )
        self.runtime = AsrRuntime(
            AsrRuntimeSettings(
                model=settings.model_dir(settings.asr_model),
                aligner=settings.model_dir(settings.aligner_model),
                device="cuda",
                dtype="bfloat16",
                max_batch_items=settings.max_batch_size,
            )
        )
        self.runtime.load()

    # Recordings that arrive together become one batched model call. One model call
    # has no point to stop between, so a cancellation flag is honoured at the start.
    @modal.batched(max_batch_size=settings.max_batch_size, wait_ms=settings.batch_wait_ms)
    def transcribe(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return run_transcriptions(self.runtime, jobs, control)


def run_transcriptions(
    runtime: AsrRuntime, jobs: list[dict[str, Any]], store: Any
) -> list[dict[str, Any]]:
    """One batch of wire transcription requests, each marked started; a request whose
    cancellation flag is already set is dropped with a "cancelled" result."""
    parsed: list[TranscriptionJob | TranscriptionResult] = []
    now = time.time()
    for wire in jobs:
        ticket = str(wire.get("ticket") or "")
        if ticket:
            store.put(CallControl.started_key(ticket), now)
        if ticket and store.contains(CallControl.cancel_key(ticket)):
            parsed.append(TranscriptionResult.failure(CANCELLED_MESSAGE, retryable=False))
            continue
        try:
            parsed.append(TranscriptionJob.from_wire(wire))
        except ValueError:
            parsed.append(TranscriptionResult.failure("malformed job", retryable=False))
    results = iter(runtime.transcribe([j for j in parsed if isinstance(j, TranscriptionJob)]))
    return [
        next(results).to_wire() if isinstance(job, TranscriptionJob) else job.to_wire()
        for job in parsed
    ]
