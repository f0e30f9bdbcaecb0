"""Continuous batching of speech chunks across requests.

Every request in flight is cut into chunks; each model call takes chunks from every
request waiting for the same model, round-robin (one chunk per request, then a second
each, ...), so a request that arrives while a long one runs joins the very next model
call instead of queueing behind the long one's remaining chunks. A request is answered
the moment its own last chunk is generated, and hears each of its chunks (a segment)
as soon as that chunk and all before it are; a cancelled request's chunks are dropped
between model calls and the others go on. A shared call that fails is not held
against everyone in it: its requests are retried one by one, and only the one whose
own call fails gets the error.

A request's first chunk is never batched with its own later chunks (the chunks of one
call finish together, and the first one is what a listener can play early); the
later ones then go round-robin with everyone else's.

The model work itself (planning chunks, a batched model call, assembling a WAV) is the
`ChunkModel`'s (gpu.qwen_runtime.QwenRuntime); this module only decides what runs
when. It serves both a synchronous caller (`QwenRuntime.synthesize` drives `step`
itself) and a long-lived loop thread (`start`) that many callers submit to, as the
Modal class's concurrent inputs and the in-process engine do.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpu.engine import Audio
from gpu.jobs import CANCELLED_MESSAGE, JobKind, SynthesisJob, SynthesisResult

log = logging.getLogger(__name__)


@dataclass(eq=False)  # compared by identity: two chunks may have equal texts
class Chunk:
    """One chunk of one request: what a batched model call generates."""

    job: SynthesisJob
    index: int  # place in the request's text
    text: str
    kind: JobKind  # the model that speaks it (a design text's later chunks are cloned)
    prompt: Any = None  # the clone prompt of clone chunks


@dataclass(frozen=True)
class Plan:
    """A request's chunks: those that can run now, and texts that wait for the first
    chunk's audio (a design text's later chunks, cloned from its first)."""

    ready: list[Chunk]
    after_first: list[str]

    @property
    def total(self) -> int:
        return len(self.ready) + len(self.after_first)


@dataclass(frozen=True)
class Generated:
    waveform: Any
    at_limit: bool  # the chunk used its whole token budget (and was cut there)


class ChunkModel(Protocol):
    @property
    def batch_limit(self) -> int: ...

    def plan(self, job: SynthesisJob) -> Plan | SynthesisResult: ...

    def generate(self, kind: JobKind, chunks: Sequence[Chunk]) -> list[Generated]: ...

    def generation_failure(self, exc: Exception) -> SynthesisResult: ...

    def continue_after(self, first: Chunk, waveform: Any, texts: list[str]) -> list[Chunk]: ...

    def assemble(
        self, job: SynthesisJob, waveforms: list[Any], chunks_at_limit: tuple[int, ...]
    ) -> SynthesisResult: ...

    def segment_audio(self, job: SynthesisJob, waveform: Any) -> Audio: ...


def _never() -> bool:
    return False


def _ignore(fraction: float) -> None:
    return None


# Hears each finished chunk of a request in text order: (index, count, its audio).
SegmentListener = Callable[[int, int, Audio], None]


@dataclass(eq=False)
class Request:
    """One submitted job and where it stands."""

    job: SynthesisJob
    sequence: int  # arrival order
    cancelled: Callable[[], bool]
    on_progress: Callable[[float], None]  # the fraction of its chunks done
    on_segment: SegmentListener | None = None
    future: Future[SynthesisResult] = field(default_factory=Future)
    waiting: deque[Chunk] = field(default_factory=deque)
    after_first: list[str] = field(default_factory=list)
    total: int = 0
    waveforms: dict[int, Any] = field(default_factory=dict)
    at_limit: list[int] = field(default_factory=list)
    last_served: int = -1  # the model call that last took one of its chunks
    segments_sent: int = 0  # chunks 0 .. segments_sent - 1 were reported to on_segment
    alone: bool = False  # was in a failed shared call: its chunks now run by themselves

    @property
    def done(self) -> bool:
        return self.future.done()


class ChunkScheduler:
    def __init__(self, model: ChunkModel) -> None:
        self.model = model
        self._active: list[Request] = []
        self._sequence = itertools.count()
        self._calls = 0
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.model_calls = 0  # model calls made (read by tests and benchmarks)

    # -- submitting ----------------------------------------------------------------

    def submit(
        self,
        job: SynthesisJob,
        *,
        cancelled: Callable[[], bool] = _never,
        on_progress: Callable[[float], None] = _ignore,
        on_segment: SegmentListener | None = None,
    ) -> Request:
        """Queue `job`; its `future` resolves to its result (errors are results too).
        `cancelled()` is asked between model calls: once true, the request's chunks
        are dropped and it resolves to a non-retryable "cancelled" result.
        `on_progress` hears the fraction of its chunks done, and `on_segment` each
        chunk's audio in text order as soon as it and every chunk before it are done,
        always before the future resolves (both on the model's thread)."""
        request = Request(
            job=job,
            sequence=next(self._sequence),
            cancelled=cancelled,
            on_progress=on_progress,
            on_segment=on_segment,
        )
        planned = self.model.plan(job)
        if isinstance(planned, SynthesisResult):
            request.future.set_result(planned)
            return request
        request.waiting.extend(planned.ready)
        request.after_first = planned.after_first
        request.total = planned.total
        with self._changed:
            self._active.append(request)
            self._changed.notify_all()
        return request

    # -- running -------------------------------------------------------------------

    def pending(self) -> bool:
        with self._changed:
            return any(not r.done for r in self._active)

    def step(self) -> bool:
        """Drop cancelled requests, then run one model call over the chunks chosen by
        `_next_batch`. False when no chunk was waiting."""
        with self._changed:
            active = list(self._active)
        # Outside the lock: `cancelled` may ask a remote store.
        for request in active:
            if not request.done and request.cancelled():
                self._finish(request, SynthesisResult.failure(CANCELLED_MESSAGE, retryable=False))
        with self._changed:
            batch = self._next_batch()
        if not batch:
            return False
        kind = batch[0][1].kind
        try:
            generated = self.model.generate(kind, [chunk for _, chunk in batch])
        except Exception as exc:
            log.exception("Qwen3-TTS %s batch of %d chunks failed", kind, len(batch))
            involved = list({id(r): r for r, _ in batch}.values())
            if len(involved) > 1:
                # Requests of different users share calls: one request's bad chunk
                # must not fail the others. Each is put back to run alone, so only
                # the guilty one fails (in its own call).
                for request, chunk in reversed(batch):
                    request.waiting.appendleft(chunk)
                    request.alone = True
                return True
            self._finish(involved[0], self.model.generation_failure(exc))
            return True
        finally:
            self.model_calls += 1
        for (request, chunk), outcome in zip(batch, generated, strict=True):
            self._record(request, chunk, outcome)
        return True

    def _next_batch(self) -> list[tuple[Request, Chunk]]:
        """Round-robin over the requests waiting for the model that the longest-unserved
        request needs: one chunk each (in arrival order), then a second each, up to
        the batch limit. Called with the lock held."""
        self._active = [r for r in self._active if not r.done]
        ready = [r for r in self._active if r.waiting]
        if not ready:
            return []
        ready.sort(key=lambda r: (r.last_served, r.sequence))
        kind = ready[0].waiting[0].kind
        if ready[0].alone:
            ready = ready[:1]
            limit = 1
        else:
            ready = [r for r in ready if not r.alone]
            limit = max(1, self.model.batch_limit)
        batch: list[tuple[Request, Chunk]] = []
        # Requests that may give no more chunks to this call.
        closed: set[int] = set()
        while len(batch) < limit:
            took = False
            for request in ready:
                if len(batch) >= limit or id(request) in closed:
                    continue
                if request.waiting and request.waiting[0].kind == kind:
                    chunk = request.waiting.popleft()
                    batch.append((request, chunk))
                    took = True
                    if chunk.index == 0:
                        # Its first chunk goes without the later ones: a call's
                        # chunks finish together, and the first is what a listener
                        # can play while the rest is generated.
                        closed.add(id(request))
            if not took:
                break
        self._calls += 1
        for request, _ in batch:
            request.last_served = self._calls
        return batch

    def _record(self, request: Request, chunk: Chunk, outcome: Generated) -> None:
        if request.done:  # cancelled while its chunk was being generated
            return
        request.waveforms[chunk.index] = outcome.waveform
        if outcome.at_limit:
            request.at_limit.append(chunk.index)
            log.warning(
                "chunk %d of a %s request reached its token budget and was cut",
                chunk.index,
                request.job.kind,
                extra={"ticket": request.job.ticket},
            )
        request.on_progress(len(request.waveforms) / request.total)
        self._report_segments(request)
        if request.after_first and chunk.index == 0:
            later = self.model.continue_after(chunk, outcome.waveform, request.after_first)
            request.after_first = []
            with self._changed:
                request.waiting.extend(later)
                self._changed.notify_all()
        if len(request.waveforms) == request.total:
            parts = [request.waveforms[n] for n in sorted(request.waveforms)]
            self._finish(
                request, self.model.assemble(request.job, parts, tuple(sorted(request.at_limit)))
            )

    def _report_segments(self, request: Request) -> None:
        """Every chunk that is now next in text order, to the request's listener."""
        if request.on_segment is None:
            return
        while request.segments_sent in request.waveforms:
            index = request.segments_sent
            request.segments_sent += 1
            audio = self.model.segment_audio(request.job, request.waveforms[index])
            request.on_segment(index, request.total, audio)

    def _finish(self, request: Request, result: SynthesisResult) -> None:
        with self._changed:
            if request.future.done():
                return
            request.waiting.clear()
            request.future.set_result(result)
            self._changed.notify_all()

    # -- the loop thread -----------------------------------------------------------

    def start(self) -> None:
        """Run model calls on a daemon thread whenever chunks wait (for callers that
        only submit and wait on futures)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="chunk-scheduler", daemon=True)
            self._thread.start()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._changed:
                # A pending request with nothing waiting still needs its cancel
                # checked: wake up now and then while any is in flight.
                while not self._closed and not any(r.waiting for r in self._active):
                    self._changed.wait(timeout=1.0 if self._active else None)
                    if any(not r.done and r.cancelled is not _never for r in self._active):
                        break
                if self._closed:
                    return
            try:
                self.step()
            except Exception:  # never let the loop die: every request would hang
                log.exception("the chunk scheduler's step failed")
