"""Continuous batching of speech chunks across requests, admitted at every decode step.

Every request in flight is cut into chunks. Each model keeps one running batch
(`ChunkBatch`, gpu.qwen_runtime over gpu.decoding) that advances one codec frame per
step; a chunk joins it at the first step after it is waiting and a place is free, and
leaves it the step it ends, so a short request that arrives while long ones run starts
at the next step and is answered when its own chunks end, and a shared step never
waits for the longest chunk in it. Places are shared round-robin (one chunk per
request, then a second each, ...) in the order requests were last served. A request is
answered the moment its own last chunk ends, and hears each of its segments as soon as
that segment and all before it are ready; a cancelled request's chunks leave the batch
between steps and the others go on. A step that fails is not held against every
request in it: its requests are run again one at a time, and only the one whose own
run fails gets the error.

Segments: with a listener (`on_segment`) and a model that streams heads
(`head_frames` > 0), a request's first chunk is heard in two parts: its first
`head_frames` codec frames as soon as they are generated (about a second of speech),
then the rest of it when it ends; later chunks are one segment each. So a request of
n chunks has n + 1 segments, and their join is the final file.

The model work itself (prompts, a decode step, the codec, assembling a WAV) is the
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
    """One chunk of one request: one row of a running batch."""

    job: SynthesisJob
    index: int  # place in the request's text
    text: str
    kind: JobKind  # the model that speaks it (a design text's later chunks are cloned)
    prompt: Any = None  # the clone prompt of clone chunks
    stream_head: bool = False  # its first frames are wanted early, as a segment
    suspect: bool = False  # was in a failed shared step: runs by itself until it passes


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


@dataclass(frozen=True)
class Advanced:
    """What one decode step produced: heads of first chunks (their first frames, as
    audio), chunks that ended (a chunk's waveform starts with its head's), and chunks
    whose own audio could not be made (they have left the batch)."""

    heads: list[tuple[Chunk, Any]] = field(default_factory=list)
    ended: list[tuple[Chunk, Generated]] = field(default_factory=list)
    failed: list[tuple[Chunk, Exception]] = field(default_factory=list)


class ChunkBatch(Protocol):
    """One model's running batch."""

    def running(self) -> list[Chunk]: ...

    def admit(self, chunks: Sequence[Chunk]) -> None: ...

    def advance(self) -> Advanced: ...

    def discard(self, chunks: Sequence[Chunk]) -> None: ...

    def reset(self) -> None: ...


class ChunkModel(Protocol):
    @property
    def batch_limit(self) -> int: ...

    @property
    def head_frames(self) -> int: ...

    def plan(self, job: SynthesisJob) -> Plan | SynthesisResult: ...

    def new_batch(self, kind: JobKind) -> ChunkBatch: ...

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


# Hears each segment of a request in order: (index, count, its audio).
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
    running: list[Chunk] = field(default_factory=list)
    after_first: list[str] = field(default_factory=list)
    total: int = 0
    waveforms: dict[int, Any] = field(default_factory=dict)
    at_limit: list[int] = field(default_factory=list)
    last_served: int = -1  # the step that last admitted one of its chunks
    head: Any = None  # the first chunk's head, once generated
    segments: list[Any] = field(default_factory=list)  # audio of each segment, in order
    segments_sent: int = 0
    split_first: bool = False  # its first chunk is heard as head + rest

    @property
    def done(self) -> bool:
        return self.future.done()

    @property
    def segment_count(self) -> int:
        return self.total + (1 if self.split_first else 0)


class ChunkScheduler:
    def __init__(self, model: ChunkModel) -> None:
        self.model = model
        self._active: list[Request] = []
        self._batches: dict[JobKind, ChunkBatch] = {}
        self._alone: dict[JobKind, Chunk] = {}  # a suspect chunk running by itself, per model
        self._sequence = itertools.count()
        self._rounds = 0
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.steps = 0  # decode steps run, every model counted (read by tests and benchmarks)

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
        `cancelled()` is asked between steps, on the model's thread, so it must be
        cheap (a flag, not a remote read): once true, the request's chunks leave the
        batch and it resolves to a non-retryable "cancelled" result.
        `on_progress` hears the fraction of its chunks done, and `on_segment` each
        segment's audio in order as soon as it and every segment before it are ready,
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
        if on_segment is not None and self.model.head_frames > 0 and planned.ready:
            planned.ready[0].stream_head = True
            request.split_first = True
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
        """Drop cancelled requests, admit waiting chunks where places are free, then
        advance every model's batch by one frame. False when nothing was admitted or
        running (then nothing waits that could run)."""
        with self._changed:
            active = list(self._active)
        # Outside the lock: `cancelled` may ask a remote store.
        for request in active:
            if not request.done and request.cancelled():
                self._finish(request, SynthesisResult.failure(CANCELLED_MESSAGE, retryable=False))
        worked = False
        for kind in ("clone", "design"):
            with self._changed:
                admitted = self._admissions(kind)
            if admitted:
                self._admit(kind, admitted)
                worked = True  # even where it failed: its chunks were dealt with
            batch = self._batches.get(kind)
            if batch is not None and batch.running():
                self._advance(kind, batch)
                worked = True
        return worked

    def _batch(self, kind: JobKind) -> ChunkBatch:
        if kind not in self._batches:
            self._batches[kind] = self.model.new_batch(kind)
        return self._batches[kind]

    def _admissions(self, kind: JobKind) -> list[tuple[Request, Chunk]]:
        """Round-robin over the requests waiting for `kind`'s model, in the order they
        were last served: one chunk each, then a second each, up to the free places.
        A suspect chunk (one that was in a failed shared step) takes the model only
        once its batch is empty, and keeps it to itself. Called with the lock held."""
        self._active = [r for r in self._active if not r.done]
        alone = self._alone.get(kind)
        if alone is not None:
            if alone in self._batches[kind].running():
                return []
            del self._alone[kind]
        running = len(self._batches[kind].running()) if kind in self._batches else 0
        ready = [r for r in self._active if r.waiting and r.waiting[0].kind == kind]
        if not ready:
            return []
        ready.sort(key=lambda r: (r.last_served, r.sequence))
        if ready[0].waiting[0].suspect:
            if running:
                return []
            chunk = ready[0].waiting.popleft()
            self._alone[kind] = chunk
            self._rounds += 1
            ready[0].last_served = self._rounds
            return [(ready[0], chunk)]
        ready = [r for r in ready if not r.waiting[0].suspect]
        free = max(1, self.model.batch_limit) - running
        taken: list[tuple[Request, Chunk]] = []
        while len(taken) < free:
            took = False
            for request in ready:
                if len(taken) >= free:
                    break
                if not (request.waiting and request.waiting[0].kind == kind):
                    continue
                if len(taken) == free - 1 and self._started(request, kind, taken):
                    # The last place is kept for a request with nothing running yet:
                    # one that arrives next starts at the next step, never behind
                    # the chunks of requests already playing.
                    continue
                taken.append((request, request.waiting.popleft()))
                took = True
            if not took:
                break
        if taken:
            self._rounds += 1
            for request, _ in taken:
                request.last_served = self._rounds
        return taken

    @staticmethod
    def _started(request: Request, kind: JobKind, taken: list[tuple[Request, Chunk]]) -> bool:
        return any(c.kind == kind for c in request.running) or any(r is request for r, _ in taken)

    def _admit(self, kind: JobKind, admitted: list[tuple[Request, Chunk]]) -> None:
        try:
            self._batch(kind).admit([chunk for _, chunk in admitted])
        except Exception as exc:
            log.exception("Qwen3-TTS %s prompts of %d chunks failed", kind, len(admitted))
            self._failed(admitted, exc)
            return
        for request, chunk in admitted:
            request.running.append(chunk)

    def _advance(self, kind: JobKind, batch: ChunkBatch) -> None:
        running = batch.running()  # before the step: rows may leave during it
        try:
            advanced = batch.advance()
        except Exception as exc:
            log.exception("a Qwen3-TTS %s step failed", kind)
            # Half a step ran: the batch's state is not to be trusted.
            batch.reset()
            owners = {id(c): r for r in self._active for c in r.running}
            involved = [(owners[id(c)], c) for c in running if id(c) in owners]
            for request, chunk in involved:
                request.running.remove(chunk)
            self._failed(involved, exc)
            return
        finally:
            self.steps += 1
        owners = {id(c): r for r in self._active for c in r.running}
        for chunk, head in advanced.heads:
            owner = owners.get(id(chunk))
            if owner is not None and not owner.done:
                self._guarded(owner, self._record_head, owner, head)
        for chunk, outcome in advanced.ended:
            owner = owners.get(id(chunk))
            if owner is not None:
                owner.running.remove(chunk)
                self._guarded(owner, self._record, owner, chunk, outcome)
        for chunk, error in advanced.failed:
            owner = owners.get(id(chunk))
            if owner is not None:
                log.error("chunk %d of a %s request failed: %s", chunk.index, kind, error)
                owner.running.remove(chunk)
                self._finish(owner, self.model.generation_failure(error))

    def _guarded(self, request: Request, record: Callable[..., None], *args: Any) -> None:
        """A request's own callbacks (progress, segments) and assembly fail that request
        only: the rest of the step is still recorded for everyone else."""
        try:
            record(*args)
        except Exception as exc:
            log.exception("recording a step for a %s request failed", request.job.kind)
            self._finish(request, self.model.generation_failure(exc))

    def _failed(self, involved: list[tuple[Request, Chunk]], exc: Exception) -> None:
        """Requests of different users share steps: one request's bad chunk must not
        fail the others. Where a failed admission or step held chunks of several
        requests, each of those chunks is put back as a suspect and runs by itself, so
        only the guilty one fails (in its own run); the requests' other chunks go on
        as before. A request whose first chunk's head was already heard cannot start
        that chunk again (its segments would not join): it fails, retryably."""
        requests = list({id(r): r for r, _ in involved}.values())
        if len(requests) == 1:
            self._finish(requests[0], self.model.generation_failure(exc))
            return
        for request in requests:
            if request.done:
                continue
            again = [c for r, c in involved if r is request]
            if request.head is not None and any(c.index == 0 for c in again):
                self._finish(
                    request,
                    SynthesisResult.failure(
                        f"generation failed mid-stream: {type(exc).__name__}: {exc}",
                        retryable=True,
                    ),
                )
                continue
            for chunk in again:
                chunk.suspect = True
            request.waiting.extendleft(sorted(again, key=lambda c: c.index, reverse=True))
        with self._changed:
            self._changed.notify_all()

    def _discard(self, chunks: list[Chunk]) -> None:
        for kind, batch in self._batches.items():
            mine = [c for c in chunks if c.kind == kind]
            if mine:
                batch.discard(mine)

    def _record_head(self, request: Request, head: Any) -> None:
        request.head = head
        if request.on_segment is not None:
            request.segments.append(head)
            self._report_segments(request)

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
            # The answer is the join of what the listener heard, segment by segment.
            parts = (
                request.segments
                if request.split_first
                else [request.waveforms[n] for n in sorted(request.waveforms)]
            )
            self._finish(
                request, self.model.assemble(request.job, parts, tuple(sorted(request.at_limit)))
            )

    def _collect_segments(self, request: Request) -> None:
        """Every segment now ready in order: after the head (where the first chunk is
        split), the first chunk's rest, then each later chunk whole."""
        offset = 1 if request.split_first else 0
        while True:
            if request.split_first and not request.segments:
                return  # the head comes first
            index = len(request.segments) - offset
            if index not in request.waveforms:
                return
            waveform = request.waveforms[index]
            if index == 0 and request.split_first:
                waveform = waveform[len(request.head) :]
            request.segments.append(waveform)

    def _report_segments(self, request: Request) -> None:
        """Every segment now ready in order, to the request's listener."""
        if request.on_segment is None:
            return
        self._collect_segments(request)
        while request.segments_sent < len(request.segments):
            index = request.segments_sent
            request.segments_sent += 1
            audio = self.model.segment_audio(request.job, request.segments[index])
            request.on_segment(index, request.segment_count, audio)

    def _finish(self, request: Request, result: SynthesisResult) -> None:
        with self._changed:
            if request.future.done():
                return
            request.waiting.clear()
            running = list(request.running)
            request.running.clear()
            request.future.set_result(result)
            # Its audio is not kept past its answer.
            self._active = [r for r in self._active if r is not request]
            self._changed.notify_all()
        self._discard(running)

    # -- the loop thread -----------------------------------------------------------

    def start(self) -> None:
        """Run steps on a daemon thread whenever chunks wait or run (for callers that
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

    def _busy(self) -> bool:
        return any(r.waiting or r.running for r in self._active if not r.done)

    def _loop(self) -> None:
        while True:
            with self._changed:
                # A pending request with nothing waiting still needs its cancel
                # checked: wake up now and then while any is in flight.
                while not self._closed and not self._busy():
                    self._changed.wait(timeout=1.0 if self._active else None)
                    if any(not r.done and r.cancelled is not _never for r in self._active):
                        break
                if self._closed:
                    return
            try:
                worked = self.step()
            except Exception:  # never let the loop die: every request would hang
                log.exception("the chunk scheduler's step failed")
                worked = False
            if not worked:
                # Busy but nothing ran (a failure, a cancel being taken): never spin.
                with self._changed:
                    self._changed.wait(timeout=0.05)
