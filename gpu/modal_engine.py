"""The engine that runs jobs on the deployed Modal app (gpu/modal_app.py).

Each request is spawned as a Modal FunctionCall with a fresh ticket; the call id and
ticket are reported to the listener (`job.on_call_started`) before waiting, so a
restarted listener re-attaches to the running call (`job.resume_call_id`) instead of
paying for a second one. The listener forgets the call when an attempt fails, so a
retry always spawns afresh.

Waiting polls `FunctionCall.get`. Two budgets apply: time queued at Modal (until the
GPU code marks the request started) has its own, longer limit, and the execution
limit counts from the start mark, as Modal's own function timeout does.

While a synthesis call runs, its finished chunks are read from the app's segments
Queue (gpu/segments.py: a spawned call cannot stream its result) and reported through
`job.on_segment`, in order, all before the answer is returned.

Stopping (user cancel, deadline) never calls `FunctionCall.cancel()`: with
`@modal.batched` (the ASR class) that would terminate every request in the batch, and
the speech class's inputs are sync methods under `@modal.concurrent`, for which
Modal's cancel stops the whole container (modal 1.6.4, modal/_container_entrypoint.py:
with input concurrency, an input's cancel callback SIGINTs the container, and its
other inputs, other users' requests, start again elsewhere). It sets the request's
flag in the app's control Dict instead (gpu/jobs.py CallControl), and the GPU code
drops only that request's remaining chunks. A call recorded before tickets existed
has no flag to set: it is left to finish or reach Modal's timeout, unread. When the listener merely stops waiting (shutdown,
or another listener now holds the task), the remote work is left running for the next
claimer to re-attach to.

The `modal` module is injected (`sdk=`), so tests drive the engine with a fake SDK;
by default the real package is imported.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
import uuid
from typing import Any, Protocol

from gpu.engine import (
    DEFAULT_TIMEOUT_SECONDS,
    Audio,
    CloneRequest,
    DesignRequest,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    JobContext,
    PermanentEngineError,
    RetryableEngineError,
    SegmentRelay,
)
from gpu.jobs import CANCELLED_MESSAGE, CallControl, SynthesisJob, SynthesisResult
from gpu.segments import SegmentAssembler, queue_name

log = logging.getLogger(__name__)

# Must match gpu/modal_app.py (not imported from there: that module needs modal's
# image machinery and builds the app on import).
CLASS_NAME = "Qwen3TTS"
METHOD_NAME = "synthesize"
DEFAULT_POLL_SECONDS = 25.0
CANCEL_GRACE_SECONDS = 10.0
# Queued at Modal (including a cold start) before the GPU code starts the request.
DEFAULT_QUEUE_TIMEOUT_SECONDS = 60 * 60
# Segment parts taken per read of the segments Queue.
PARTS_PER_READ = 16
# After a call's answer, how long its last segments may take to be read: they were put
# before the answer, so only a segment that a dead listener took is ever waited for.
SEGMENT_DRAIN_SECONDS = 5.0


def _succeeded(result: Any) -> bool:
    """A synthesis answer with audio (gpu/jobs.py SynthesisResult.to_wire)."""
    return isinstance(result, dict) and "error" not in result


class _CallGone(Exception):
    """A re-attached call that Modal no longer knows or keeps: spawn a fresh one."""


def classify_modal_error(
    exc: BaseException, sdk: Any, app_name: str, class_name: str = CLASS_NAME
) -> EngineError:
    """Map an exception from Modal (or from the remote code) to an EngineError that
    says whether retrying (always on a fresh call) can help. Exceptions as raised by
    modal 1.6.4's client (modal/_utils/function_utils.py `_process_result`)."""
    errors = sdk.exception
    kind = type(exc).__name__
    if isinstance(exc, errors.FunctionTimeoutError):
        return EngineTimeout(f"the GPU job ran past the Modal app's time limit: {exc}")
    if isinstance(exc, errors.OutputExpiredError):
        # No output and no unfinished input (modal/_functions.py `poll_function`).
        return RetryableEngineError("the GPU job's result expired on Modal before it was collected")
    if isinstance(exc, errors.TimeoutError):
        return EngineTimeout(f"Modal timed out ({kind}): {exc}")
    if isinstance(exc, errors.RemoteError):
        # A terminated input: no result data, only a status. Cancels of this request
        # are told apart by the engine (its own flag); what is left is someone else's
        # doing (a batch-mate cancelled through Modal, a container stopped or
        # preempted), which a fresh call does not repeat.
        return RetryableEngineError(f"the GPU job was terminated on Modal ({kind}): {exc}")
    if isinstance(exc, errors.NotFoundError):
        return EngineUnavailable(
            f"Modal app {app_name!r} (class {class_name}) was not found: deploy it with "
            f"`UTTER_MODAL_APP={app_name} modal deploy gpu/modal_app.py` ({exc})"
        )
    if isinstance(exc, errors.AuthError | errors.PermissionDeniedError):
        return EngineUnavailable(
            f"Modal refused the credentials ({kind}): check MODAL_TOKEN_ID/MODAL_TOKEN_SECRET "
            f"or ~/.modal.toml ({exc})"
        )
    if isinstance(
        exc,
        errors.ConnectionError
        | errors.InternalFailure
        | errors.InternalError
        | errors.ServiceError
        | errors.ResourceExhaustedError
        | errors.ExecutionError
        | ConnectionError
        | OSError,
    ):
        return RetryableEngineError(f"Modal is unreachable or failed ({kind}): {exc}")
    if isinstance(
        exc,
        errors.InvalidError
        | errors.SerializationError
        | errors.DeserializationError
        | errors.RequestSizeError,
    ):
        return PermanentEngineError(f"Modal rejected the request ({kind}): {exc}")
    # An exception raised by the app's own code, re-raised here by Modal. Out of GPU
    # memory is worth a fresh call (another container, an emptier GPU).
    retryable = "OutOfMemory" in kind
    return EngineError(f"the GPU app failed ({kind}): {exc}", retryable=retryable)


class WireJob(Protocol):
    """What a spawn sends: a synthesis job, or a transcription job (gpu/modal_transcriber.py)."""

    def to_wire(self) -> dict[str, Any]: ...


class ModalEngine:
    name = "modal"
    can_clone = True
    # Half of one container's concurrent inputs (gpu/modal_app.py max_inputs = 32): two
    # listeners fill a warm container's chunk scheduler; more containers start when
    # more listeners (or a larger UTTER_SPEECH_IN_FLIGHT) send more.
    requests_in_flight = 16

    def __init__(
        self,
        app_name: str,
        *,
        sdk: Any = None,
        class_name: str = CLASS_NAME,
        method_name: str = METHOD_NAME,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
        queue_timeout_seconds: float | None = DEFAULT_QUEUE_TIMEOUT_SECONDS,
    ) -> None:
        if sdk is None:
            try:
                import modal as sdk
            except ImportError as exc:
                raise EngineUnavailable(
                    "the `modal` package is not installed: pip install -e '.[modal]'"
                ) from exc
        self.sdk = sdk
        self.app_name = app_name
        self.class_name = class_name
        self.method_name = method_name
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds  # execution, from the start mark
        self.queue_timeout_seconds = queue_timeout_seconds  # queued, before the start mark
        self._instance: Any = None
        self._control: Any = None
        self._segments: Any = None

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio:
        return await self._run(SynthesisJob.for_clone(request), job)

    async def design(self, request: DesignRequest, job: JobContext) -> Audio:
        return await self._run(SynthesisJob.for_design(request), job)

    async def aclose(self) -> None:
        self._instance = None
        self._control = None
        self._segments = None

    def _method(self) -> Any:
        if self._instance is None:
            # Lazy: no network until the first spawn, which raises NotFoundError if the
            # app is not deployed.
            cls = self.sdk.Cls.from_name(self.app_name, self.class_name)
            self._instance = cls()
        return getattr(self._instance, self.method_name)

    def control(self) -> Any:
        """The app's control Dict (lazy, like every Modal `from_name`)."""
        if self._control is None:
            self._control = self.sdk.Dict.from_name(
                CallControl.dict_name(self.app_name), create_if_missing=True
            )
        return self._control

    def segment_queue(self) -> Any:
        """The app's segments Queue (gpu/segments.py; lazy, like the control Dict)."""
        if self._segments is None:
            self._segments = self.sdk.Queue.from_name(
                queue_name(self.app_name), create_if_missing=True
            )
        return self._segments

    async def _run(self, work: SynthesisJob, job: JobContext) -> Audio:
        outcome = SynthesisResult.from_wire(await self.call(work, job, segments=True))
        if outcome.audio is None and outcome.error_message == CANCELLED_MESSAGE:
            raise PermanentEngineError("the GPU job was cancelled (its cancellation flag is set)")
        audio = outcome.unwrap()
        await job.on_progress(1.0)
        return audio

    async def call(self, work: WireJob, job: JobContext, *, segments: bool = False) -> Any:
        """Runs one request on the bound class's method and returns its raw result:
        re-attached or spawned, supervised, stopped when cancelled. With `segments`,
        the request's finished chunks are read from the segments Queue while it runs
        and handed to `job.on_segment`, all of them before this returns. Every failure
        is an EngineError (or CancelledError)."""
        try:
            return await self._call(work, job, segments)
        except (asyncio.CancelledError, EngineError):
            raise
        except Exception as exc:
            raise classify_modal_error(exc, self.sdk, self.app_name, self.class_name) from exc

    async def _call(self, work: WireJob, job: JobContext, segments: bool) -> Any:
        if job.resume_call_id:
            call_id, ticket = CallControl.parse_handle(job.resume_call_id)
            # FunctionCall.from_id is lazy: it never checks that the call exists
            # (modal/_functions.py `_FunctionCall.from_id`, hydrate_lazily=True). A
            # call that is gone shows up when it is read.
            call = self.sdk.FunctionCall.from_id(call_id)
            log.info("task %s re-attaches to Modal call %s", job.task_id, call_id)
            try:
                return await self._supervise(call, ticket, job, resumed=True, segments=segments)
            except _CallGone as gone:
                log.warning("task %s: %s; spawning a new call", job.task_id, gone)
        call, ticket = await self._spawn(work, job)
        return await self._supervise(call, ticket, job, resumed=False, segments=segments)

    @staticmethod
    def request_payload(work: WireJob, ticket: str) -> dict[str, Any]:
        """What one spawn sends: the wire job and its ticket. A clone request names its
        voice's prepared reference (id, hash, short-lived URL), never its audio."""
        return work.to_wire() | {"ticket": ticket}

    async def _spawn(self, work: WireJob, job: JobContext) -> tuple[Any, str]:
        ticket = uuid.uuid4().hex
        payload = self.request_payload(work, ticket)
        spawning = asyncio.ensure_future(self._method().spawn.aio(payload))
        try:
            call = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # The call may exist remotely already: flag it so the GPU code drops it.
            if not job.keep_remote_work():
                await self._flag_cancelled(ticket, job)
            raise
        await job.on_call_started(CallControl.call_handle(call.object_id, ticket))
        return call, ticket

    async def _supervise(
        self, call: Any, ticket: str, job: JobContext, *, resumed: bool, segments: bool
    ) -> Any:
        """Waits for the call (reading its segments meanwhile); stops its remote work
        when the wait is cancelled or a budget runs out (unless the listener only stops
        waiting)."""
        relay = SegmentRelay(job) if segments and ticket else None
        reader = (
            asyncio.create_task(self._read_segments(ticket, relay)) if relay is not None else None
        )
        try:
            result = await self._wait(call, ticket, resumed=resumed)
            if reader is not None and relay is not None and _succeeded(result):
                # Every segment was put before the answer: what is left is read now.
                await asyncio.wait({reader}, timeout=SEGMENT_DRAIN_SECONDS)
                await relay.finish()
            return result
        except (asyncio.CancelledError, EngineTimeout):
            if not job.keep_remote_work():
                await self._stop_remote(call, ticket, job)
            raise
        except self.sdk.exception.RemoteError as exc:
            if ticket and await self._is_flagged(ticket):
                raise PermanentEngineError("the GPU job was cancelled on Modal") from exc
            raise
        finally:
            if reader is not None and relay is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                await relay.close()

    async def _read_segments(self, ticket: str, relay: SegmentRelay) -> None:
        """Reads the ticket's partition of the segments Queue until the last segment,
        handing each whole segment to `relay` in order. A read that fails is logged
        and tried again: streaming is a preview, the answer carries all the audio."""
        assembler = SegmentAssembler()
        while True:
            try:
                items = await self.segment_queue().get_many.aio(
                    PARTS_PER_READ, block=True, timeout=self.poll_seconds, partition=ticket
                )
            except queue.Empty:
                continue
            except Exception:
                log.warning("reading the segments of %s failed", ticket, exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for item in items:
                segment = assembler.add(item)
                if segment is None:
                    continue
                relay.put(segment)
                if segment.index == segment.count - 1:
                    return

    async def _wait(self, call: Any, ticket: str, *, resumed: bool) -> Any:
        loop = asyncio.get_running_loop()
        queued_since = loop.time()
        started_at: float | None = None  # wall clock, from the GPU code's start mark
        while True:
            limit = self.poll_seconds
            if started_at is None and ticket:
                started_at = await self._started_at(ticket)
            if started_at is None:
                if self.queue_timeout_seconds is not None:
                    waited = loop.time() - queued_since
                    if waited >= self.queue_timeout_seconds:
                        raise EngineTimeout(
                            f"the GPU job waited {waited:.0f} s at Modal without starting "
                            f"(limit {self.queue_timeout_seconds:g} s)"
                        )
                    limit = min(limit, self.queue_timeout_seconds - waited)
            elif self.timeout_seconds is not None:
                ran = time.time() - started_at
                if ran >= self.timeout_seconds:
                    raise EngineTimeout(
                        f"the GPU job ran {ran:.0f} s (limit {self.timeout_seconds:g} s)"
                    )
                limit = min(limit, self.timeout_seconds - ran)
            try:
                return await call.get.aio(timeout=max(limit, 0.0))
            except TimeoutError:
                # The builtin TimeoutError: the call is still running
                # (modal/_functions.py `poll_function`; Modal's own timeouts subclass
                # modal.exception.TimeoutError instead).
                continue
            except self.sdk.exception.OutputExpiredError as exc:
                if resumed:
                    raise _CallGone(f"the result of call {call.object_id} expired") from exc
                raise
            except self.sdk.exception.NotFoundError as exc:
                if resumed:
                    raise _CallGone(f"Modal no longer knows call {call.object_id}") from exc
                raise

    async def _started_at(self, ticket: str) -> float | None:
        try:
            value = await self.control().get.aio(CallControl.started_key(ticket))
        except Exception:
            log.warning("reading the start mark of %s failed", ticket, exc_info=True)
            return None
        return float(value) if isinstance(value, int | float) else None

    async def _is_flagged(self, ticket: str) -> bool:
        try:
            return bool(await self.control().contains.aio(CallControl.cancel_key(ticket)))
        except Exception:
            log.warning("reading the cancellation flag of %s failed", ticket, exc_info=True)
            return False

    async def _flag_cancelled(self, ticket: str, job: JobContext) -> None:
        try:
            await asyncio.wait_for(
                asyncio.shield(self.control().put.aio(CallControl.cancel_key(ticket), time.time())),
                CANCEL_GRACE_SECONDS,
            )
            log.info("task %s: flagged GPU job %s cancelled", job.task_id, ticket)
        except Exception:
            log.exception("task %s: flagging GPU job %s cancelled failed", job.task_id, ticket)

    async def _stop_remote(self, call: Any, ticket: str, job: JobContext) -> None:
        if ticket:
            await self._flag_cancelled(ticket, job)
            return
        # A call recorded before tickets existed has no flag, and Modal's cancel would
        # stop every request sharing its container (module docstring).
        log.warning(
            "task %s: Modal call %s has no ticket to flag; it runs on until it ends or times out",
            job.task_id,
            call.object_id,
        )
