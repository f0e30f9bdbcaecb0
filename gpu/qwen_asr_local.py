"""Qwen3-ASR in this process (CPU, or a local GPU), from weights on disk.

Configuration (environment):
- `UTTER_QWEN_ASR_MODEL_DIR`: a Qwen3-ASR model folder (e.g. a download of
  `Qwen/Qwen3-ASR-1.7B`);
- `UTTER_QWEN_ALIGNER_DIR` (optional): a Qwen3-ForcedAligner folder, for word timings;
- `UTTER_QWEN_DEVICE` / `UTTER_QWEN_DTYPE`: as for the local Qwen3-TTS engine.

Model calls are blocking, so they run in a worker thread; requests that arrive while
one runs are transcribed together in the next call (one batch). Cancellation stops
waiting at once; the thread finishes its current batch and its result is dropped.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpu.engine import DEFAULT_TIMEOUT_SECONDS, EngineUnavailable, JobContext, deadline
from gpu.qwen_asr_runtime import QWEN_ASR_PACKAGES, AsrRuntime, AsrRuntimeSettings
from gpu.transcription import Transcript, TranscriptionJob, TranscriptionResult


@dataclass(frozen=True)
class LocalAsrWeights:
    model_dir: Path | None
    aligner_dir: Path | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LocalAsrWeights:
        def folder(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value and (Path(value) / "config.json").is_file() else None

        return cls(folder("UTTER_QWEN_ASR_MODEL_DIR"), folder("UTTER_QWEN_ALIGNER_DIR"))

    def missing_message(self, env: Mapping[str, str]) -> str:
        where = env.get("UTTER_QWEN_ASR_MODEL_DIR")
        if not where:
            return "UTTER_QWEN_ASR_MODEL_DIR is not set"
        return f"no Qwen3-ASR weights in UTTER_QWEN_ASR_MODEL_DIR={where} (no config.json)"


def qwen_asr_stack_missing() -> str | None:
    """What is missing to run qwen-asr here, or None."""
    missing = [name for name in ("torch", "qwen_asr") if importlib.util.find_spec(name) is None]
    if missing:
        return f"Python packages missing: {', '.join(missing)}; install {QWEN_ASR_PACKAGES}"
    return None


def _device(env: Mapping[str, str]) -> tuple[str, str]:
    device = env.get("UTTER_QWEN_DEVICE") or None
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = env.get("UTTER_QWEN_DTYPE") or ("bfloat16" if device.startswith("cuda") else "float32")
    return device, dtype


class QwenAsrLocalTranscriber:
    name = "qwen-asr-local"

    def __init__(
        self,
        settings: AsrRuntimeSettings,
        *,
        timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        problem = qwen_asr_stack_missing()
        if problem is not None:
            raise EngineUnavailable(problem)
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self._runtime = AsrRuntime(settings)
        self._waiting: list[tuple[TranscriptionJob, asyncio.Future[TranscriptionResult]]] = []
        self._batcher: asyncio.Task[None] | None = None

    @property
    def can_align(self) -> bool:
        """Whether word timings can be asked for (a forced aligner is configured)."""
        return self.settings.aligner is not None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **options: float | None
    ) -> QwenAsrLocalTranscriber:
        env = os.environ if env is None else env
        weights = LocalAsrWeights.from_env(env)
        if weights.model_dir is None:
            raise EngineUnavailable(weights.missing_message(env))
        device, dtype = _device(env)
        settings = AsrRuntimeSettings(
            model=str(weights.model_dir),
            aligner=str(weights.aligner_dir) if weights.aligner_dir else None,
            device=device,
            dtype=dtype,
        )
        return cls(settings, **options)

    async def transcribe(self, job: TranscriptionJob, context: JobContext) -> Transcript:
        async with deadline(self.timeout_seconds, f"local Qwen3-ASR task {context.task_id}"):
            result: asyncio.Future[TranscriptionResult] = asyncio.get_running_loop().create_future()
            self._waiting.append((job, result))
            if self._batcher is None or self._batcher.done():
                self._batcher = asyncio.create_task(self._run_batches())
            try:
                transcript = (await result).unwrap()
            finally:
                # Cancelled before its batch started: it never reaches the model.
                self._waiting = [(j, f) for j, f in self._waiting if f is not result]
        await context.on_progress(1.0)
        return transcript

    async def aclose(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()

    def _load_and_transcribe(self, jobs: list[TranscriptionJob]) -> list[TranscriptionResult]:
        self._runtime.load()  # once; a no-op afterwards
        return self._runtime.transcribe(jobs)

    async def _run_batches(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.settings.max_batch_items]
            self._waiting = self._waiting[len(batch) :]
            live = [(job, future) for job, future in batch if not future.done()]
            try:
                results = await asyncio.to_thread(
                    self._load_and_transcribe, [job for job, _ in live]
                )
            except Exception as exc:  # loading or the model failed: every waiter hears why
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), outcome in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(outcome)
