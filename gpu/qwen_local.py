"""Qwen3-TTS in this process (CPU, or a local GPU), from weights on disk.

Configuration (environment):
- `UTTER_QWEN_MODEL_DIR`: a folder laid out like the Modal weights volume,
  `<dir>/Qwen/Qwen3-TTS-12Hz-0.6B-Base/` and `<dir>/Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign/`;
- `UTTER_QWEN_BASE_DIR` / `UTTER_QWEN_DESIGN_DIR`: one model folder each (override);
- `UTTER_QWEN_BASE_MODEL` / `UTTER_QWEN_DESIGN_MODEL`: hub ids naming the subfolders;
- `UTTER_QWEN_DEVICE` (default: cuda when available, else cpu), `UTTER_QWEN_DTYPE`
  (default: bfloat16 on cuda, float32 on cpu);
- `UTTER_QWEN_PROMPT_DIR`: where voice clone prompts are kept across restarts (by
  voice id and reference hash, gpu/voice_prompts.py); unset, they are kept in memory.

Model calls are blocking, so they run on the chunk scheduler's thread (gpu/scheduler.py),
which every job of this process submits to: concurrent jobs take turns chunk by chunk, so
a short job is never held behind a long one. Each chunk is reported (`on_segment`) as
soon as it and the chunks before it are done. Cancellation stops waiting at once and
drops the job's chunks after the chunk being generated (one chunk per model call).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu.engine import (
    DEFAULT_TIMEOUT_SECONDS,
    Audio,
    CloneRequest,
    DesignRequest,
    EngineUnavailable,
    JobContext,
    PermanentEngineError,
    Segment,
    SegmentRelay,
    deadline,
)
from gpu.jobs import CANCELLED_MESSAGE, JobKind, SynthesisJob
from gpu.qwen_runtime import (
    DEFAULT_BASE_MODEL,
    DEFAULT_DESIGN_MODEL,
    QWEN_PACKAGES,
    QwenRuntime,
    RuntimeSettings,
)
from gpu.scheduler import ChunkScheduler
from gpu.voice_prompts import PromptStore

log = logging.getLogger(__name__)


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and (
        path / "speech_tokenizer" / "config.json"
    ).is_file()


@dataclass(frozen=True)
class LocalWeights:
    base_dir: Path | None
    design_dir: Path | None
    # Where we looked, for the error message when nothing is there.
    searched: tuple[Path, ...] = field(default=())

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LocalWeights:
        root = env.get("UTTER_QWEN_MODEL_DIR")
        base_id = env.get("UTTER_QWEN_BASE_MODEL", DEFAULT_BASE_MODEL)
        design_id = env.get("UTTER_QWEN_DESIGN_MODEL", DEFAULT_DESIGN_MODEL)
        candidates: dict[JobKind, Path | None] = {
            "clone": Path(env["UTTER_QWEN_BASE_DIR"]) if env.get("UTTER_QWEN_BASE_DIR") else None,
            "design": Path(env["UTTER_QWEN_DESIGN_DIR"])
            if env.get("UTTER_QWEN_DESIGN_DIR")
            else None,
        }
        if root:
            candidates["clone"] = candidates["clone"] or Path(root) / base_id
            candidates["design"] = candidates["design"] or Path(root) / design_id
        searched = tuple(p for p in candidates.values() if p is not None)
        found = {kind: p for kind, p in candidates.items() if p is not None and _is_model_folder(p)}
        return cls(found.get("clone"), found.get("design"), searched)

    @property
    def any(self) -> bool:
        return self.base_dir is not None or self.design_dir is not None

    def missing_message(self) -> str:
        where = (
            ", ".join(str(p) for p in self.searched) or "nowhere (UTTER_QWEN_MODEL_DIR is not set)"
        )
        return (
            f"no Qwen3-TTS weights on disk (looked in {where}). Download them with "
            f"`huggingface-cli download {DEFAULT_BASE_MODEL} --local-dir $UTTER_QWEN_MODEL_DIR/{DEFAULT_BASE_MODEL}` "
            f"and `huggingface-cli download {DEFAULT_DESIGN_MODEL} --local-dir $UTTER_QWEN_MODEL_DIR/{DEFAULT_DESIGN_MODEL}`, "
            "then set UTTER_QWEN_MODEL_DIR"
        )


def qwen_stack_missing() -> str | None:
    """What is missing to run qwen-tts here, or None."""
    missing = [name for name in ("torch", "qwen_tts") if importlib.util.find_spec(name) is None]
    if missing:
        return f"Python packages missing: {', '.join(missing)}; install {QWEN_PACKAGES}"
    return None


def _default_device() -> tuple[str, str]:
    import torch

    if torch.cuda.is_available():
        return "cuda", "bfloat16"
    return "cpu", "float32"


class QwenLocalEngine:
    name = "qwen-local"
    can_clone = True

    def __init__(
        self,
        weights: LocalWeights,
        *,
        device: str | None = None,
        dtype: str | None = None,
        timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
        generate_options: Mapping[str, Any] | None = None,
        max_chunk_chars: int | None = None,
        prompt_dir: Path | None = None,
    ) -> None:
        problem = qwen_stack_missing()
        if problem is not None:
            raise EngineUnavailable(problem)
        if not weights.any:
            raise EngineUnavailable(weights.missing_message())
        self.weights = weights
        self._device = device
        self._dtype = dtype
        self._generate_options = dict(generate_options or {})
        self._max_chunk_chars = max_chunk_chars
        self._prompt_dir = prompt_dir
        self.timeout_seconds = timeout_seconds
        self._runtime: QwenRuntime | None = None
        self._scheduler: ChunkScheduler | None = None
        self._load_lock = asyncio.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> QwenLocalEngine:
        env = os.environ if env is None else env
        return cls(
            LocalWeights.from_env(env),
            device=env.get("UTTER_QWEN_DEVICE") or None,
            dtype=env.get("UTTER_QWEN_DTYPE") or None,
            prompt_dir=Path(env["UTTER_QWEN_PROMPT_DIR"])
            if env.get("UTTER_QWEN_PROMPT_DIR")
            else None,
            **options,
        )

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio:
        if self.weights.base_dir is None:
            raise EngineUnavailable(
                f"cloning needs the Base model on disk: {self.weights.missing_message()}"
            )
        return await self._run(SynthesisJob.for_clone(request), job)

    async def design(self, request: DesignRequest, job: JobContext) -> Audio:
        if self.weights.design_dir is None:
            raise EngineUnavailable(
                f"voice design needs {DEFAULT_DESIGN_MODEL} on disk: {self.weights.missing_message()}"
            )
        return await self._run(SynthesisJob.for_design(request), job)

    async def aclose(self) -> None:
        if self._scheduler is not None:
            await asyncio.to_thread(self._scheduler.close)
        self._scheduler = None
        self._runtime = None

    async def scheduler(self) -> ChunkScheduler:
        """The chunk scheduler every job of this engine feeds (started with the runtime)."""
        runtime = await self.runtime()
        if self._scheduler is None:
            self._scheduler = ChunkScheduler(runtime)
            self._scheduler.start()
        return self._scheduler

    async def runtime(self) -> QwenRuntime:
        """The loaded runtime (loads on first use, in a worker thread)."""
        async with self._load_lock:
            if self._runtime is None:
                if self._device is None:
                    device, dtype = _default_device()
                else:
                    device = self._device
                    dtype = "bfloat16" if device.startswith("cuda") else "float32"
                settings = RuntimeSettings(
                    base_model=str(self.weights.base_dir) if self.weights.base_dir else None,
                    design_model=str(self.weights.design_dir) if self.weights.design_dir else None,
                    device=device,
                    dtype=self._dtype or dtype,
                    generate_options=self._generate_options,
                    max_chunk_chars=self._max_chunk_chars,
                )
                # The same prompt path as the Modal app's: memory, then this folder,
                # then the reference fetched from its URL and encoded once.
                runtime = QwenRuntime(
                    settings,
                    prompt_store=PromptStore(self._prompt_dir) if self._prompt_dir else None,
                )
                await asyncio.to_thread(runtime.load)
                self._runtime = runtime
            return self._runtime

    async def _run(self, work: SynthesisJob, job: JobContext) -> Audio:
        async with deadline(self.timeout_seconds, f"local Qwen3-TTS task {job.task_id}"):
            scheduler = await self.scheduler()
            loop = asyncio.get_running_loop()
            stop = threading.Event()

            async def forward(fraction: float) -> None:
                await job.on_progress(fraction)

            def report(fraction: float) -> None:
                # From the scheduler's thread; fire and forget on the event loop.
                asyncio.run_coroutine_threadsafe(forward(fraction), loop)

            segments = SegmentRelay(job)

            def segment(index: int, count: int, audio: Audio) -> None:
                # From the scheduler's thread, before the request's future resolves:
                # queued on the loop ahead of the result.
                segments.put_threadsafe(Segment(index, count, audio))

            try:
                # Planning encodes a clone prompt on a cache miss: blocking, so threaded.
                request = await asyncio.to_thread(
                    scheduler.submit,
                    work,
                    cancelled=stop.is_set,
                    on_progress=report,
                    on_segment=segment,
                )
                try:
                    result = await asyncio.wrap_future(request.future)
                except asyncio.CancelledError:
                    # A model call cannot be interrupted; the job's remaining chunks are
                    # dropped before the next one.
                    stop.set()
                    raise
                await segments.finish()
            finally:
                await segments.close()
            if result.audio is None and result.error_message == CANCELLED_MESSAGE:
                raise PermanentEngineError("generation was stopped")  # pragma: no cover
            return result.unwrap()
