"""The transcriber that runs on the deployed Modal app's Qwen3-ASR class
(gpu/modal_app.py, class `Qwen3ASR`).

Calls travel exactly as the speech engine's do (gpu/modal_engine.py): spawned as a
FunctionCall with a ticket, reported before waiting, re-attached after a listener
restart, with separate limits for time queued at Modal and time running, and stopped
through the ticket's cancellation flag (the ASR method is batched too, so Modal's own
cancel would end every recording of the batch). It drives a `ModalEngine` bound to
the ASR class for that, so the call handling lives once.
"""

from __future__ import annotations

from typing import Any

from gpu.engine import DEFAULT_TIMEOUT_SECONDS, JobContext
from gpu.modal_engine import ModalEngine
from gpu.transcription import Transcript, TranscriptionJob, TranscriptionResult

# Must match gpu/modal_app.py (not imported from there: it builds the app on import).
ASR_CLASS_NAME = "Qwen3ASR"
ASR_METHOD_NAME = "transcribe"


class ModalTranscriber:
    name = "modal-asr"
    # The app's Qwen3ASR class always loads the forced aligner (gpu/modal_app.py).
    can_align = True

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
            timeout_seconds=timeout_seconds,
            **options,
        )

    async def transcribe(self, job: TranscriptionJob, context: JobContext) -> Transcript:
        transcript = TranscriptionResult.from_wire(await self._calls.call(job, context)).unwrap()
        await context.on_progress(1.0)
        return transcript

    async def aclose(self) -> None:
        await self._calls.aclose()
