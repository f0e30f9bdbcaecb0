"""Running Qwen3-TTS: the one home of the model code, shared by the Modal GPU class
(gpu/modal_app.py) and the in-process engine (gpu/qwen_local.py).

It loads the Base (clone) and VoiceDesign models, keeps an LRU of clone prompts per
(voice id, reference hash) backed by an optional prompt store (gpu/voice_prompts.py:
the reference is fetched and encoded once, not sent with every request), cuts long texts into
sentence chunks, generates chunks of compatible jobs as one batched model call under
per-chunk token budgets, keeps a designed voice across a text's chunks, and joins each
job's chunks into one 16-bit WAV.

`torch` and `qwen_tts` are imported lazily so this module imports without the model
stack (the `qwen` optional dependency group).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpu.audio import decode_wav, encode_wav, join_chunks
from gpu.engine import Audio, VoiceReference
from gpu.jobs import JobKind, SynthesisJob, SynthesisResult
from gpu.scheduler import Advanced, Chunk, ChunkScheduler, Generated, Plan
from gpu.text import CODEC_FRAMES_PER_SECOND, speech_chunks, token_budget
from gpu.voice_prompts import (
    PromptStore,
    ReferenceUnavailable,
    check_reference,
    fetch_reference,
    prompt_from_fields,
    prompt_to_fields,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
LARGE_BASE_MODEL = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
DEFAULT_DESIGN_MODEL = "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign"
# qwen-tts's own default for max_new_tokens (qwen_tts 0.1.1,
# inference/qwen3_tts_model.py, _merge_generate_kwargs): the cap of every budget.
QWEN_MAX_NEW_TOKENS = 2048
# Frames decoded before a piece of codes for its samples' sake: qwen-tts's own chunked
# decoding gives each piece this much left context (qwen_tts 0.1.1,
# core/tokenizer_12hz/modeling_qwen3_tts_tokenizer_v2.py, `chunked_decode`).
DECODE_CONTEXT_FRAMES = 25
QWEN_PACKAGES = "qwen-tts==0.1.1 (installed with --no-deps) plus the `qwen` extra of pyproject.toml"


class GenerationStopped(Exception):
    """`should_stop` said so between two decode steps (the caller was cancelled)."""


@dataclass(frozen=True)
class RuntimeSettings:
    base_model: str | None  # local folder (or hub id where the hub is reachable)
    design_model: str | None
    device: str = "cpu"  # "cpu", "cuda", "cuda:0"
    dtype: str = "float32"  # "bfloat16" on GPUs
    attn_implementation: str = "sdpa"  # beat flash-attention-2 in the old team's runs
    max_chunk_chars: int | None = None  # None: the limit suited to each text's script
    max_batch_items: int = 8  # chunks in a running batch: bounds GPU memory
    # Codec frames of a streamed first chunk heard before the rest of it (about a
    # second of speech); 0: every chunk is one segment.
    head_frames: int = CODEC_FRAMES_PER_SECOND
    prompt_cache_size: int = 64  # prompts kept in memory, by (voice id, reference hash)
    # Extra generate() arguments. A "max_new_tokens" here caps every chunk's budget
    # (e.g. 32 for the tiny test model, which never says end-of-speech).
    generate_options: dict[str, Any] = field(default_factory=dict)


def _prompt_failure(job: SynthesisJob, exc: Exception) -> SynthesisResult:
    log.exception("clone prompt for voice %s failed", job.voice_id)
    if isinstance(exc, ReferenceUnavailable):
        return SynthesisResult.failure(str(exc), retryable=exc.retryable)
    if _out_of_memory(exc):
        # Not the reference's fault: a fresh call may well fit.
        _release_gpu_memory()
        return SynthesisResult.failure(
            f"out of GPU memory while encoding the reference: {exc}", retryable=True
        )
    return SynthesisResult.failure(f"could not encode the reference audio: {exc}", retryable=False)


def float_to_pcm16(waveform: Any) -> array[int]:
    """A float waveform in [-1, 1] (numpy array or sequence) as array('h')."""
    import numpy as np

    clipped = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
    samples = array("h")
    samples.frombytes((clipped * 32767.0).round().astype("<i2").tobytes())
    return samples


def _out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError (torch.cuda.OutOfMemoryError is the same class), without
    importing torch for the check."""
    return "OutOfMemory" in type(exc).__name__


def _release_gpu_memory() -> None:
    """After an out-of-memory error, hand the allocator's cached blocks back so the
    next model call starts from a clean slate."""
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class QwenRuntime:
    """Loaded models plus the clone-prompt cache. Model calls are serialised by a lock:
    a model is not safe to call from two threads at once."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        prompt_store: PromptStore | None = None,
        fetch: Callable[[VoiceReference], bytes] = fetch_reference,
    ) -> None:
        self.settings = settings
        self.prompt_store = prompt_store
        self.fetch = fetch
        self._models: dict[JobKind, Any] = {}
        self._codecs: dict[JobKind, Any] = {}  # gpu.codec.CodecDecoder per model
        self._prompts: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.prompt_cache_hits = 0
        self.prompt_cache_misses = 0
        self.prompts_loaded = 0  # from the prompt store
        self.references_encoded = 0  # fetched from Storage and encoded
        self.codec_seconds = 0.0  # spent turning codes into audio (read by benchmarks)

    # -- loading -----------------------------------------------------------------

    def load(self) -> None:
        """Load every configured model (blocking; seconds to minutes)."""
        import torch
        from qwen_tts import Qwen3TTSModel

        dtype = getattr(torch, self.settings.dtype)
        wanted: tuple[tuple[JobKind, str | None], ...] = (
            ("clone", self.settings.base_model),
            ("design", self.settings.design_model),
        )
        for kind, path in wanted:
            if path is None or kind in self._models:
                continue
            log.info(
                "loading Qwen3-TTS %s model from %s on %s (%s)",
                kind,
                path,
                self.settings.device,
                self.settings.dtype,
            )
            self._models[kind] = Qwen3TTSModel.from_pretrained(
                path,
                device_map=self.settings.device,
                dtype=dtype,
                attn_implementation=self.settings.attn_implementation,
            )

    def can_run(self, kind: JobKind) -> bool:
        return kind in self._models

    def sample_rate(self, kind: JobKind) -> int:
        model = self._models[kind]
        return int(model.model.speech_tokenizer.get_output_sample_rate())

    def supported_languages(self, kind: JobKind) -> set[str] | None:
        languages = self._models[kind].get_supported_languages()
        return None if languages is None else {str(lang).lower() for lang in languages}

    # -- clone prompts -----------------------------------------------------------

    def clone_prompt(self, job: SynthesisJob) -> Any:
        """The voice's clone prompt: from memory, else from the prompt store, else
        rebuilt from the reference at the job's URL (checked against its hash) and
        kept in both. Keyed by (voice id, reference hash): a voice whose reference
        changed has a new hash, so a stale prompt is never found."""
        reference = job.reference
        check_reference(reference)
        key = reference.cache_key
        # The cache is shared by every thread that calls the runtime (each request
        # plans in its own thread): read and change it only under the lock, the same
        # one that serialises model calls. Fetching and file reads run outside it.
        with self._lock:
            cached = self._prompts.get(key)
            if cached is not None:
                self._prompts.move_to_end(key)
                self.prompt_cache_hits += 1
                return cached
            self.prompt_cache_misses += 1
        stored = self.prompt_store.load(reference) if self.prompt_store is not None else None
        if stored is not None:
            prompt = prompt_from_fields(stored, self.settings.device)
            self.prompts_loaded += 1
        else:
            prompt = self._encode(reference, self.fetch(reference))
            if self.prompt_store is not None:
                self.prompt_store.save(reference, prompt_to_fields(prompt))
        with self._lock:
            self._prompts[key] = prompt
            while len(self._prompts) > self.settings.prompt_cache_size:
                self._prompts.popitem(last=False)
        return prompt

    def _encode(self, reference: VoiceReference, wav: bytes) -> Any:
        import numpy as np

        decoded = decode_wav(wav)
        waveform = (
            np.frombuffer(decoded.samples.tobytes(), dtype=np.int16).astype(np.float32) / 32768.0
        )
        with self._lock:
            items = self._models["clone"].create_voice_clone_prompt(
                ref_audio=(waveform, decoded.sample_rate), ref_text=reference.transcript
            )
            self.references_encoded += 1
        return items[0]

    # -- synthesis ---------------------------------------------------------------

    # -- the ChunkModel side of gpu.scheduler ------------------------------------

    @property
    def batch_limit(self) -> int:
        return self.settings.max_batch_items

    @property
    def head_frames(self) -> int:
        return self.settings.head_frames

    def plan(self, job: SynthesisJob) -> Plan | SynthesisResult:
        """`job`'s chunks, or the error that keeps it from running. A design text of
        several chunks keeps one voice: its first chunk is designed, and the rest wait
        to be cloned from that first chunk's audio (each design call samples a new
        voice)."""
        problem = self._check(job)
        if problem is not None:
            return problem
        prompt = None
        if job.kind == "clone":
            try:
                prompt = self.clone_prompt(job)
            except Exception as exc:  # a bad reference fails its job only
                return _prompt_failure(job, exc)
        texts = speech_chunks(job.text, self.settings.max_chunk_chars)
        after_first: list[str] = []
        if job.kind == "design" and len(texts) > 1 and self.can_run("clone"):
            texts, after_first = texts[:1], texts[1:]
        ready = [Chunk(job, n, text, job.kind, prompt) for n, text in enumerate(texts)]
        return Plan(ready=ready, after_first=after_first)

    def continue_after(self, first: Chunk, waveform: Any, texts: list[str]) -> list[Chunk]:
        """A design text's later chunks, cloned from its first chunk's audio. Where the
        clone prompt cannot be made, they are designed one by one instead."""
        later = enumerate(texts, start=first.index + 1)
        try:
            with self._lock:
                items = self._models["clone"].create_voice_clone_prompt(
                    ref_audio=(waveform, self.sample_rate("design")), ref_text=first.text
                )
        except Exception:
            log.exception("cloning the designed voice failed: its chunks are designed apart")
            return [Chunk(first.job, n, text, "design") for n, text in later]
        return [Chunk(first.job, n, text, "clone", items[0]) for n, text in later]

    def generation_failure(self, exc: Exception) -> SynthesisResult:
        retryable = _out_of_memory(exc)
        if retryable:
            _release_gpu_memory()
        return SynthesisResult.failure(
            f"generation failed: {type(exc).__name__}: {exc}", retryable=retryable
        )

    def budget(self, text: str) -> int:
        """A chunk's `max_new_tokens`: from its text (gpu.text.token_budget), never above
        the configured cap."""
        cap = int(self.settings.generate_options.get("max_new_tokens", QWEN_MAX_NEW_TOKENS))
        return min(token_budget(text), cap)

    # -- synthesis ---------------------------------------------------------------

    def synthesize(
        self,
        jobs: Sequence[SynthesisJob],
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[float], None] = lambda fraction: None,
        dropped: Callable[[int], bool] = lambda index: False,
    ) -> list[SynthesisResult]:
        """Generate every job in this thread, their chunks batched together by a
        scheduler (gpu.scheduler). A job that cannot run gets an error result; the
        others still run. Every chunk runs under its own token budget; one that
        reaches it is cut there and listed in the result's `chunks_at_limit`.

        Between two decode steps, `should_stop()` ends everything (the one caller is
        gone) and `dropped(index)` ends one job (its caller cancelled it): that job
        gets a non-retryable "cancelled" result and the rest of the batch goes on."""
        scheduler = ChunkScheduler(self)
        requests = [
            scheduler.submit(job, cancelled=functools.partial(dropped, index))
            for index, job in enumerate(jobs)
        ]
        total = sum(r.total for r in requests)
        while scheduler.pending():
            if should_stop():
                raise GenerationStopped()
            scheduler.step()
            done = sum(len(r.waveforms) for r in requests)
            on_progress(done / max(total, 1))
        return [request.future.result() for request in requests]

    def _check(self, job: SynthesisJob) -> SynthesisResult | None:
        if not job.text.strip():
            return SynthesisResult.failure("nothing to say: the text is empty", retryable=False)
        if not self.can_run(job.kind):
            model = "Base (clone)" if job.kind == "clone" else "VoiceDesign"
            return SynthesisResult.failure(f"the {model} model is not loaded here", retryable=False)
        if job.kind == "clone" and not (job.reference_sha256 and job.reference_url):
            return SynthesisResult.failure(
                "clone job without a prepared reference (its hash and URL)", retryable=False
            )
        supported = self.supported_languages(job.kind)
        if supported is not None and job.language.lower() not in supported:
            return SynthesisResult.failure(
                f"language {job.language!r} is not supported; choose one of {sorted(supported)}",
                retryable=False,
            )
        return None

    def new_batch(self, kind: JobKind) -> QwenBatch:
        """A running batch of `kind`'s model, for one scheduler (gpu.decoding)."""
        return QwenBatch(self, kind)

    def prompts(self, kind: JobKind, chunks: Sequence[Chunk]) -> Any:
        """qwen-tts's talker inputs for `chunks` (gpu.decoding.prefill_inputs), through
        its public generate call for `kind`. Called with the lock held."""
        from gpu.decoding import prefill_inputs

        model = self._models[kind]
        texts = [chunk.text for chunk in chunks]
        languages = [chunk.job.language for chunk in chunks]
        if kind == "clone":
            prompts = [chunk.prompt for chunk in chunks]

            def call() -> Any:
                return model.generate_voice_clone(
                    text=texts,
                    language=languages,
                    voice_clone_prompt=prompts,
                    **self.settings.generate_options,
                )
        else:
            instructs = [chunk.job.instruct for chunk in chunks]

            def call() -> Any:
                return model.generate_voice_design(
                    text=texts,
                    language=languages,
                    instruct=instructs,
                    **self.settings.generate_options,
                )

        return prefill_inputs(model, call)

    def decode(self, kind: JobKind, codes: Any, context: Any) -> Any:
        """`codes` (frames, groups) as a float waveform, decoded after `context` (codes
        of the frames before them, of which the last DECODE_CONTEXT_FRAMES count) whose
        samples are dropped. Called with the lock held."""
        import torch

        from gpu.codec import CodecDecoder

        if kind not in self._codecs:
            self._codecs[kind] = CodecDecoder(self._models[kind].model.speech_tokenizer)
        codec = self._codecs[kind]
        if codes.shape[0] == 0:
            return codec.decode(codes).numpy()
        started = time.perf_counter()
        before = context[-DECODE_CONTEXT_FRAMES:] if context is not None else codes[:0]
        wav = codec.decode(torch.cat((before.to(codes.device), codes)))
        samples = wav[before.shape[0] * codec.samples_per_frame :].cpu().numpy()
        self.codec_seconds += time.perf_counter() - started
        return samples

    def segment_audio(self, job: SynthesisJob, waveform: Any) -> Audio:
        """One chunk as a 16-bit WAV of its own: the samples `assemble` joins."""
        sample_rate = self.sample_rate(job.kind)
        samples = float_to_pcm16(waveform)
        return Audio(
            wav=encode_wav(samples, sample_rate),
            sample_rate=sample_rate,
            duration_seconds=len(samples) / sample_rate,
        )

    def assemble(
        self, job: SynthesisJob, waveforms: list[Any], chunks_at_limit: tuple[int, ...]
    ) -> SynthesisResult:
        """`job`'s chunks joined into one 16-bit WAV (the join of its segments' samples).
        A design text's cloned chunks share its rate: both models use the same 24 kHz
        speech tokenizer."""
        sample_rate = self.sample_rate(job.kind)
        samples = join_chunks([float_to_pcm16(w) for w in waveforms], sample_rate)
        return SynthesisResult(
            audio=Audio(
                wav=encode_wav(samples, sample_rate),
                sample_rate=sample_rate,
                duration_seconds=len(samples) / sample_rate,
                chunks_at_limit=chunks_at_limit,
            )
        )


def _reference_codes(chunk: Chunk) -> Any:
    """The codes a clone chunk's audio follows: its voice's reference, in voice-clone
    (ICL) mode. qwen-tts decodes a clone's codes after the whole reference's and cuts
    that part off (inference/qwen3_tts_model.py, `generate_voice_clone`); its tail is
    the context that matters to the codec."""
    prompt = chunk.prompt
    if prompt is None or not getattr(prompt, "icl_mode", False):
        return None
    return getattr(prompt, "ref_code", None)


class QwenBatch:
    """One model's running batch for one scheduler (gpu.scheduler.ChunkBatch): rows
    join and leave at every step (gpu.decoding.StepDecoder); a row's codes become
    audio when it ends, and a streamed first chunk's first frames as soon as they are
    generated (its head), the rest then decoded after the head's frames so the two
    join as one decode would."""

    def __init__(self, runtime: QwenRuntime, kind: JobKind) -> None:
        from gpu.decoding import StepDecoder

        self.runtime = runtime
        self.kind = kind
        self.decoder = StepDecoder(runtime._models[kind])
        # Rows are keyed by their chunk's id (two chunks may have equal texts).
        self._chunks: dict[Hashable, Chunk] = {}
        # Each sent head: its frames and its audio.
        self._heads: dict[Hashable, tuple[int, Any]] = {}

    def running(self) -> list[Chunk]:
        return [self._chunks[key] for key in (row.key for row in self.decoder.rows)]

    def admit(self, chunks: Sequence[Chunk]) -> None:
        budgets = [self.runtime.budget(chunk.text) for chunk in chunks]
        with self.runtime._lock:
            prompts = self.runtime.prompts(self.kind, chunks)
            self.decoder.admit([id(c) for c in chunks], budgets, prompts)
        for chunk in chunks:
            self._chunks[id(chunk)] = chunk

    def advance(self) -> Advanced:
        """One step of the batch. A chunk whose codes cannot be decoded fails alone
        (`failed`); the step itself failing raises (every row's state is then lost)."""
        advanced = Advanced()
        with self.runtime._lock:
            ended = self.decoder.step()
            for row in list(self.decoder.rows):
                chunk = self._chunks[row.key]
                if self._wants_head(chunk, row.usable):
                    try:
                        head = self._head(chunk, self.decoder.codes(row.key))
                    except Exception as exc:
                        self.decoder.discard([row.key])
                        self._forget(row.key)
                        advanced.failed.append((chunk, exc))
                        continue
                    advanced.heads.append((chunk, head))
            for finished in ended:
                chunk = self._chunks[finished.key]
                try:
                    waveform = self._audio(chunk, finished.codes, advanced)
                except Exception as exc:
                    advanced.failed.append((chunk, exc))
                else:
                    advanced.ended.append((chunk, Generated(waveform, finished.at_limit)))
                finally:
                    self._forget(finished.key)
        return advanced

    def _wants_head(self, chunk: Chunk, frames: int) -> bool:
        wanted = self.runtime.settings.head_frames
        return chunk.stream_head and id(chunk) not in self._heads and frames >= wanted

    def _head(self, chunk: Chunk, codes: Any) -> Any:
        """The first frames of a streamed chunk as audio, decoded as qwen-tts decodes a
        chunk's start (after its reference's codes, for a clone)."""
        audio = self.runtime.decode(self.kind, codes, _reference_codes(chunk))
        self._heads[id(chunk)] = (int(codes.shape[0]), audio)
        return audio

    def _audio(self, chunk: Chunk, codes: Any, advanced: Advanced) -> Any:
        """An ended chunk's waveform: where its head was sent, the head's samples then
        the rest decoded after the head's frames."""
        import numpy as np
        import torch

        if not chunk.stream_head:
            return self.runtime.decode(self.kind, codes, _reference_codes(chunk))
        if id(chunk) not in self._heads:
            # Ended before its head was due: the head is all but its last frame, so a
            # rest still follows it.
            head_frames = max(0, min(self.runtime.settings.head_frames, len(codes) - 1))
            advanced.heads.append((chunk, self._head(chunk, codes[:head_frames])))
        split, head = self._heads[id(chunk)]
        before = codes[:split]
        reference = _reference_codes(chunk)
        if reference is not None:
            before = torch.cat((reference.to(codes.device), before))
        rest = self.runtime.decode(self.kind, codes[split:], before)
        return np.concatenate((head, rest))

    def _forget(self, key: Hashable) -> None:
        self._chunks.pop(key, None)
        self._heads.pop(key, None)

    def discard(self, chunks: Sequence[Chunk]) -> None:
        keys = [id(c) for c in chunks]
        with self.runtime._lock:
            self.decoder.discard(keys)
        for key in keys:
            self._forget(key)

    def reset(self) -> None:
        with self.runtime._lock:
            self.decoder.reset()
        self._chunks.clear()
        self._heads.clear()
