"""The transcriber that runs on the deployed Modal app's Qwen3-ASR class
(gpu/modal_app.py, class `Qwen3ASR`).

Calls travel exactly as the speech engine's do (gpu/modal_engine.py): spawned as a
FunctionCall whose id is reported before waiting, re-attached after a listener
restart, and cancelled remotely when the asyncio task is cancelled. It drives a
`ModalEngine` bound to the ASR class for that, so the call handling lives once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gpu.engine import (
    DEFAULT_TIMEOUT_SECONDS,
    EngineError,
    JobContext,
    deadline,
)
from gpu.modal_engine import ModalEngine, classify_modal_error
from gpu.transcription import Transcript, TranscriptionJob, TranscriptionResult

# Must match gpu/modal_app.py (not imported from there: it builds the app on import).
ASR_CLASS_NAME = "Qwen3ASR"
ASR_METHOD_NAME = "transcribe"


class ModalTranscriber:
    name = "modal-asr"

    def __init__(
        self,
        app_name: str,
        *,
        sdk: Any = None,
        poll_seconds: float | None = None,
        timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        options: dict[str, Any] = {"sdk": sdk}
        if poll_seconds is not None:
            options["poll_seconds"] = poll_seconds
        self._calls = ModalEngine(
            app_name,
            class_name=ASR_CLASS_NAME,
            method_name=ASR_METHOD_NAME,
            timeout_seconds=None,  # the deadline is ours, below
            **options,
        )
        self.timeout_seconds = timeout_seconds

    async def transcribe(self, job: TranscriptionJob, context: JobContext) -> Transcript:
        calls = self._calls
        async with deadline(self.timeout_seconds, f"Modal transcription {context.task_id}"):
            try:
                call = await calls._attach_or_spawn(job, context)
                try:
                    result = await calls._wait(call)
                except asyncio.CancelledError:
                    await calls._cancel_remote(call, context)
                    raise
            except (asyncio.CancelledError, EngineError):
                raise
            except (Exception, calls.sdk.exception.InputCancellation) as exc:
                raise classify_modal_error(
                    exc, calls.sdk, calls.app_name, class_name=ASR_CLASS_NAME
                ) from exc
        transcript = TranscriptionResult.from_wire(result).unwrap()
        await context.on_progress(1.0)
        return transcript

    async def aclose(self) -> None:
        await self._calls.aclose()
