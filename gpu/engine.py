"""The engine interface the listener calls.

Every engine turns a request into 16-bit PCM WAV bytes. Engines are cancellation-safe:
the listener cancels the asyncio task running a call (user cancel, shutdown, timeout)
and the engine must stop its work, remote work included, and let `CancelledError`
propagate. Errors say whether a retry can help.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class EngineError(Exception):
    """A failed engine call. `retryable` tells the listener whether trying the same
    request again can succeed (capacity, network, timeouts) or not (bad input)."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class RetryableEngineError(EngineError):
    retryable = True


class PermanentEngineError(EngineError):
    retryable = False


class EngineTimeout(RetryableEngineError):
    """The call ran past its deadline; its remote work was cancelled."""


class EngineUnavailable(PermanentEngineError):
    """The engine cannot run here (no weights, no credentials, missing package)."""


# The old backend's job limit: long texts take minutes even on a GPU.
DEFAULT_TIMEOUT_SECONDS = 30 * 60


@asynccontextmanager
async def deadline(seconds: float | None, what: str) -> AsyncIterator[None]:
    """Run the body under `asyncio.timeout(seconds)` and report expiry as
    `EngineTimeout`. The body is cancelled on expiry, so it must be cancel-safe, as
    every engine is. `None` means no deadline."""
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            yield
    except TimeoutError as exc:
        if scope.expired():
            raise EngineTimeout(f"{what} ran past its {seconds:g} s deadline") from exc
        raise


@dataclass(frozen=True)
class Audio:
    wav: bytes  # RIFF/WAVE, 16-bit PCM, mono
    sample_rate: int
    duration_seconds: float
    # Chunks (0-based, in text order) whose generation ran into its token budget and
    # were cut there: a sign of runaway generation (see gpu.text.token_budget).
    chunks_at_limit: tuple[int, ...] = ()


@dataclass(frozen=True)
class VoiceReference:
    """A voice's prepared reference, by reference: what the speech side needs to find the
    voice's clone prompt, or to rebuild it from Storage. Never the audio itself."""

    voice_id: str
    sha256: str  # of the normalised reference WAV (voices.reference_sha256)
    transcript: str  # what that WAV says, word for word
    # A short-lived URL of the WAV: a signed Storage URL, or a file:// URL where the
    # storage is the local stand-in (readable only on the listener's machine).
    url: str

    @property
    def cache_key(self) -> tuple[str, str]:
        return (self.voice_id, self.sha256)


@dataclass(frozen=True)
class CloneRequest:
    """Speak `text` in the voice of a prepared reference."""

    text: str
    language: str  # one of the product languages, "Auto" allowed
    reference: VoiceReference


@dataclass(frozen=True)
class DesignRequest:
    """Speak `text` in a voice described by `instruct`."""

    text: str
    language: str  # explicit, never "Auto"
    instruct: str


@dataclass(frozen=True)
class Segment:
    """One finished chunk of a request, reported while the rest is rendered: chunk
    `index` of `count`, in text order. Its audio is the chunk alone; the request's
    final WAV is the join of its segments' samples (gpu.audio.join_chunks)."""

    index: int
    count: int
    audio: Audio


async def _ignore_call_id(call_id: str) -> None:
    return None


async def _ignore_segment(segment: Segment) -> None:
    return None


async def _ignore_progress(fraction: float) -> None:
    return None


def _never() -> bool:
    return False


@dataclass(frozen=True)
class JobContext:
    """What the listener tells an engine about the job a call belongs to."""

    task_id: str
    # A remote call started by an earlier attempt of this task (e.g. a Modal
    # FunctionCall id). An engine that can re-attach to it must, instead of paying
    # for a second call.
    resume_call_id: str | None = None
    # Called once a remote call exists, with its id, so a restarted listener can
    # re-attach. Engines without remote calls never call it.
    on_call_started: Callable[[str], Awaitable[None]] = field(default=_ignore_call_id)
    # Progress in [0, 1]; the listener throttles what it writes.
    on_progress: Callable[[float], Awaitable[None]] = field(default=_ignore_progress)
    # Asked when the call is cancelled: True when the listener only stops waiting
    # (shutdown, or another listener now holds the task) and the task lives on, so
    # remote work must keep running for the next claimer to re-attach to. False: the
    # work is unwanted (cancelled, deleted, timed out): stop it.
    keep_remote_work: Callable[[], bool] = field(default=_never)
    # Called with each finished chunk, once each, in text order (segment 0 first), as
    # soon as it and every chunk before it are done, and always before the call
    # returns. Awaited before the next one: a slow listener delays the next report,
    # never the model. Exceptions it raises fail the call (it should not raise).
    on_segment: Callable[[Segment], Awaitable[None]] = field(default=_ignore_segment)


class SegmentRelay:
    """Hands segments to `job.on_segment` one at a time, in the order they are put,
    from the event loop, whichever thread they come from: the engine's model thread
    (`put_threadsafe`) or the loop itself (`put`). `finish` waits until every segment
    put so far was delivered; `close` drops what is left (the call was stopped)."""

    def __init__(self, job: JobContext) -> None:
        self._loop = asyncio.get_running_loop()
        self._waiting: asyncio.Queue[Segment | None] = asyncio.Queue()
        self._delivering = asyncio.create_task(self._deliver(job.on_segment))

    async def _deliver(self, on_segment: Callable[[Segment], Awaitable[None]]) -> None:
        while (segment := await self._waiting.get()) is not None:
            await on_segment(segment)

    def put(self, segment: Segment) -> None:
        self._waiting.put_nowait(segment)

    def put_threadsafe(self, segment: Segment) -> None:
        self._loop.call_soon_threadsafe(self._waiting.put_nowait, segment)

    async def finish(self) -> None:
        self._waiting.put_nowait(None)
        await asyncio.shield(self._delivering)

    async def close(self) -> None:
        if not self._delivering.done():
            self._delivering.cancel()
        await asyncio.gather(self._delivering, return_exceptions=True)


# Speech requests an engine takes at once when it does not say (class attribute
# `requests_in_flight`): in-process engines share one CPU or GPU with the listener.
DEFAULT_REQUESTS_IN_FLIGHT = 3


def requests_in_flight(engine: object) -> int:
    """How many speech requests `engine` wants in flight to keep its model busy."""
    return int(getattr(engine, "requests_in_flight", DEFAULT_REQUESTS_IN_FLIGHT))


@runtime_checkable
class Engine(Protocol):
    name: str
    can_clone: bool  # False: clone requests are served in a stock voice (see docs/gpu.md)

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio: ...

    async def design(self, request: DesignRequest, job: JobContext) -> Audio: ...

    async def aclose(self) -> None: ...
