"""Running Qwen3-ASR: the one home of the recogniser's model code, shared by the Modal
GPU class (gpu/modal_app.py) and the in-process transcriber (gpu/qwen_asr_local.py).

It loads `Qwen3ASRModel` (and, when configured, `Qwen3ForcedAligner`) from qwen-asr,
and transcribes a batch of recordings in one model call: qwen-asr's `transcribe`
takes lists and batches them itself (`max_inference_batch_size`). Language names
are the product's (`public.languages`), which are qwen-asr's own names; "Auto" lets
the model detect the language.

`torch`, `numpy` and `qwen_asr` are imported lazily so this module imports without
the model stack.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpu.audio import WavFormatError, decode_wav
from gpu.transcription import AlignedWord, Transcript, TranscriptionJob, TranscriptionResult

log = logging.getLogger(__name__)

DEFAULT_ASR_MODEL = "Qwen/Qwen3-ASR-1.7B"
DEFAULT_ALIGNER_MODEL = "Qwen/Qwen3-ForcedAligner-0.6B"
QWEN_ASR_PACKAGES = (
    "qwen-asr==0.0.6 (installed with --no-deps) plus the `qwen` extra of pyproject.toml"
)


@dataclass(frozen=True)
class AsrRuntimeSettings:
    model: str  # local folder (or hub id where the hub is reachable)
    aligner: str | None = None  # forced aligner folder; None: no word timings
    device: str = "cpu"
    dtype: str = "float32"  # "bfloat16" on GPUs
    max_batch_items: int = 16  # recordings per model call: bounds GPU memory
    # Bounds decoding: a minute of speech is a few hundred tokens. The tiny test model
    # uses a handful.
    max_new_tokens: int = 512


class AsrRuntime:
    def __init__(self, settings: AsrRuntimeSettings) -> None:
        self.settings = settings
        self._model: Any = None

    def load(self) -> None:
        """Load the recogniser (and aligner) once (blocking; seconds to minutes)."""
        if self._model is not None:
            return
        import torch
        from qwen_asr import Qwen3ASRModel

        dtype = getattr(torch, self.settings.dtype)
        log.info(
            "loading Qwen3-ASR from %s%s on %s (%s)",
            self.settings.model,
            f" with the forced aligner from {self.settings.aligner}"
            if self.settings.aligner
            else "",
            self.settings.device,
            self.settings.dtype,
        )
        self._model = Qwen3ASRModel.from_pretrained(
            self.settings.model,
            forced_aligner=self.settings.aligner,
            forced_aligner_kwargs={"device_map": self.settings.device, "dtype": dtype},
            max_inference_batch_size=self.settings.max_batch_items,
            max_new_tokens=self.settings.max_new_tokens,
            device_map=self.settings.device,
            dtype=dtype,
        )

    @property
    def can_align(self) -> bool:
        return self.settings.aligner is not None

    def transcribe(self, jobs: Sequence[TranscriptionJob]) -> list[TranscriptionResult]:
        """One result per job, in order; a bad recording fails only itself."""
        if self._model is None:
            raise RuntimeError("AsrRuntime.load() was not called")
        results: list[TranscriptionResult | None] = [None] * len(jobs)
        supported = set(self._model.get_supported_languages())
        # Aligned and plain jobs are separate model calls: qwen-asr aligns all or none.
        for align in (False, True):
            indices: list[int] = []
            audios: list[tuple[Any, int]] = []
            languages: list[str | None] = []
            for index, job in enumerate(jobs):
                if job.align != align:
                    continue
                if align and not self.can_align:
                    results[index] = TranscriptionResult.failure(
                        "word timings need the forced aligner, which is not configured",
                        retryable=False,
                    )
                    continue
                if job.language not in ("", "Auto") and job.language not in supported:
                    results[index] = TranscriptionResult.failure(
                        f"the recogniser does not know the language {job.language!r}",
                        retryable=False,
                    )
                    continue
                try:
                    audios.append(_waveform(job.audio_wav))
                except WavFormatError as exc:
                    results[index] = TranscriptionResult.failure(
                        f"the recording is not a WAV file this engine can read: {exc}",
                        retryable=False,
                    )
                    continue
                indices.append(index)
                languages.append(None if job.language in ("", "Auto") else job.language)
            if not indices:
                continue
            try:
                outputs = self._model.transcribe(
                    audio=audios, language=languages, return_time_stamps=align
                )
            except ValueError as exc:  # qwen-asr's refusals: unsupported language, sizes
                for index in indices:
                    results[index] = TranscriptionResult.failure(str(exc), retryable=False)
                continue
            for index, output in zip(indices, outputs, strict=True):
                results[index] = TranscriptionResult(_transcript(output))
        return [
            result or TranscriptionResult.failure("not transcribed", retryable=False)
            for result in results
        ]


def _waveform(wav: bytes) -> tuple[Any, int]:
    """(float32 samples in [-1, 1], rate): qwen-asr resamples to 16 kHz itself."""
    import numpy as np

    pcm = decode_wav(wav)
    samples = np.frombuffer(pcm.samples.tobytes(), dtype=np.int16).astype(np.float32) / 32768.0
    return samples, pcm.sample_rate


def _transcript(output: Any) -> Transcript:
    """An `ASRTranscription` (qwen_asr/inference/qwen3_asr.py) as our Transcript; its
    `time_stamps` is a `ForcedAlignResult` of items with text, start_time, end_time
    (qwen_asr/inference/qwen3_forced_aligner.py)."""
    stamps = getattr(output, "time_stamps", None)
    words = tuple(
        AlignedWord(str(item.text), float(item.start_time), float(item.end_time))
        for item in (stamps.items if stamps is not None else ())
    )
    # A comma-joined list when the language changed between chunks; the first names it.
    language = str(output.language or "").split(",")[0]
    return Transcript(text=str(output.text or "").strip(), language=language, words=words)
