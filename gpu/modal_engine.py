"""The engine that runs jobs on the deployed Modal app (gpu/modal_app.py).

Each request is spawned as a Modal FunctionCall whose id is reported to the listener
(`job.on_call_started`) before waiting, so a restarted listener re-attaches to the
running call (`job.resume_call_id`) instead of paying for a second one. Waiting polls
`FunctionCall.get`; asyncio cancellation (user cancel, shutdown, deadline) cancels
the remote call before `CancelledError` propagates.

The `modal` module is injected (`sdk=`), so tests drive the engine with a fake SDK;
by default the real package is imported.
"""

from __future__ import annotations

import asyncio
import logging
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
    deadline,
)
from gpu.jobs import SynthesisJob, SynthesisResult

log = logging.getLogger(__name__)

# Must match gpu/modal_app.py (not imported from there: that module needs modal's
# image machinery and builds the app on import).
CLASS_NAME = "Qwen3TTS"
METHOD_NAME = "synthesize"
DEFAULT_POLL_SECONDS = 25.0
CANCEL_GRACE_SECONDS = 10.0


def classify_modal_error(
    exc: BaseException, sdk: Any, app_name: str, class_name: str = CLASS_NAME
) -> EngineError:
    """Map an exception from Modal (or from the remote code) to an EngineError that
    says whether retrying can help."""
    errors = sdk.exception
    kind = type(exc).__name__
    if isinstance(exc, errors.FunctionTimeoutError):
        return EngineTimeout(f"the GPU job ran past the Modal app's time limit: {exc}")
    if isinstance(exc, errors.OutputExpiredError):
        return RetryableEngineError("the GPU job's result expired on Modal before it was collected")
    if isinstance(exc, errors.TimeoutError):
        return EngineTimeout(f"Modal timed out ({kind}): {exc}")
    if isinstance(exc, errors.InputCancellation):
        return PermanentEngineError("the GPU job was cancelled on Modal")
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
    # An exception raised by the app's own code, re-raised here by Modal.
    retryable = "OutOfMemory" in kind
    return EngineError(f"the GPU app failed ({kind}): {exc}", retryable=retryable)


class WireJob(Protocol):
    """What a spawn sends: a synthesis job, or a transcription job (gpu/modal_transcriber.py)."""

    def to_wire(self) -> dict[str, Any]: ...


class ModalEngine:
    name = "modal"
    can_clone = True

    def __init__(
        self,
        app_name: str,
        *,
        sdk: Any = None,
        class_name: str = CLASS_NAME,
        method_name: str = METHOD_NAME,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
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
        self.timeout_seconds = timeout_seconds
        self._instance: Any = None

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio:
        return await self._run(SynthesisJob.for_clone(request), job)

    async def design(self, request: DesignRequest, job: JobContext) -> Audio:
        return await self._run(SynthesisJob.for_design(request), job)

    async def aclose(self) -> None:
        self._instance = None

    def _method(self) -> Any:
        if self._instance is None:
            # Lazy: no network until the first spawn, which raises NotFoundError if the
            # app is not deployed.
            cls = self.sdk.Cls.from_name(self.app_name, self.class_name)
            self._instance = cls()
        return getattr(self._instance, self.method_name)

    async def _run(self, work: SynthesisJob, job: JobContext) -> Audio:
        async with deadline(self.timeout_seconds, f"Modal task {job.task_id}"):
            try:
                call = await self._attach_or_spawn(work, job)
                try:
                    result = await self._wait(call)
                except asyncio.CancelledError:
                    await self._cancel_remote(call, job)
                    raise
            except (asyncio.CancelledError, EngineError):
                raise
            except (Exception, self.sdk.exception.InputCancellation) as exc:
                raise classify_modal_error(exc, self.sdk, self.app_name) from exc
        audio = SynthesisResult.from_wire(result).unwrap()
        await job.on_progress(1.0)
        return audio

    async def _attach_or_spawn(self, work: WireJob, job: JobContext) -> Any:
        if job.resume_call_id:
            try:
                call = self.sdk.FunctionCall.from_id(job.resume_call_id)
                log.info("task %s re-attaches to Modal call %s", job.task_id, job.resume_call_id)
                return call
            except self.sdk.exception.NotFoundError:
                log.warning(
                    "task %s: Modal call %s is gone; spawning a new one",
                    job.task_id,
                    job.resume_call_id,
                )
        spawning = asyncio.ensure_future(self._method().spawn.aio(work.to_wire()))
        try:
            call = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # The call may exist remotely already: wait for its id, then cancel it.
            try:
                orphan = await asyncio.wait_for(spawning, CANCEL_GRACE_SECONDS)
            except Exception:
                log.warning(
                    "task %s: cancelled while spawning; could not cancel the call", job.task_id
                )
            else:
                await self._cancel_remote(orphan, job)
            raise
        await job.on_call_started(call.object_id)
        return call

    async def _wait(self, call: Any) -> Any:
        while True:
            try:
                return await call.get.aio(timeout=self.poll_seconds)
            except TimeoutError:
                # Modal raises the builtin TimeoutError when the call is still running
                # (its own timeouts are modal.exception.TimeoutError subclasses).
                continue

    async def _cancel_remote(self, call: Any, job: JobContext) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(call.cancel.aio()), CANCEL_GRACE_SECONDS)
            log.info("task %s: cancelled Modal call %s", job.task_id, call.object_id)
        except Exception:
            log.exception("task %s: cancelling Modal call %s failed", job.task_id, call.object_id)
