"""What each kind of task does, given its job description from `worker.claim_task`.
Each handler returns the audio to store; the worker stores it and settles the task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from gpu.engine import Audio, CloneRequest, DesignRequest, Engine, JobContext, PermanentEngineError
from gpu.transcription import Transcriber, Transcript, TranscriptionJob
from listener.storage import ObjectMissing, ObjectStore

log = logging.getLogger("listener")

# Validates and normalises an uploaded reference: bytes in, (WAV bytes, seconds) out.
# Raises ValueError with a message fit for the user when the upload is unusable.
ReferenceNormaliser = Callable[[bytes], tuple[bytes, float]]


class TranscriptRecorder(Protocol):
    """Writes machine transcripts through the database before their task completes;
    each returns the worker function's outcome."""

    async def for_voice(self, task_id: str, transcript: Transcript) -> str:
        """A clone job's transcript, to its voice (worker.record_transcript)."""
        ...

    async def for_transcription(self, task_id: str, transcript: Transcript, seconds: float) -> str:
        """A transcribe job's text (worker.record_transcription)."""
        ...


@dataclass(frozen=True)
class Job:
    task_id: str
    type: str
    user_id: str
    attempt: int
    resume_call_id: str | None
    output_bucket: str
    output_key: str
    inputs: dict[str, Any]

    @property
    def streams_segments(self) -> bool:
        """Whether this job's finished chunks are stored and announced as they come
        (generations only: worker.record_segment)."""
        return self.type == "generate"

    def segment_key(self, index: int) -> str:
        """Where segment `index` is stored: `<user>/<generation>/segments/<n>.wav`, the
        folder named after the output `<user>/<generation>.wav` (private.segment_key)."""
        return str(PurePosixPath(self.output_key).with_suffix("") / "segments" / f"{index}.wav")

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> Job:
        return cls(
            task_id=str(description["task_id"]),
            type=str(description["type"]),
            user_id=str(description["user_id"]),
            attempt=int(description["attempt"]),
            resume_call_id=description.get("resume_call_id"),
            output_bucket=str(description["output"]["bucket"]),
            output_key=str(description["output"]["key"]),
            inputs=description,
        )


class UnusableReference(PermanentEngineError):
    """The uploaded recording cannot serve as a voice reference."""


class TranscriptionUnavailable(PermanentEngineError):
    """No speech recogniser is configured for this listener."""


@dataclass(frozen=True)
class Handlers:
    engine: Engine
    store: ObjectStore
    normalise_reference: ReferenceNormaliser
    # None where no speech recogniser is configured: voices inserted without a
    # transcript then wait for their owner to type one (see docs/client-contract.md).
    transcriber: Transcriber | None = None
    record_transcript: TranscriptRecorder | None = None

    async def run(self, job: Job, context: JobContext) -> Audio:
        handler: Callable[[Job, JobContext], Awaitable[Audio]] = {
            "generate": self.generate,
            "design_preview": self.design_preview,
            "clone": self.validate_clone,
            "transcribe": self.transcribe_recording,
        }[job.type]
        return await handler(job, context)

    async def _reference(self, key: str, what: str = "the voice's reference audio") -> bytes:
        try:
            return await self.store.get("references", key)
        except ObjectMissing as exc:
            raise PermanentEngineError(f"{what} is missing ({exc})") from None

    async def _normalised(self, upload: bytes) -> tuple[bytes, float]:
        try:
            return await asyncio.to_thread(self.normalise_reference, upload)
        except ValueError as exc:
            raise UnusableReference(str(exc)) from None

    async def generate(self, job: Job, context: JobContext) -> Audio:
        voice = job.inputs["voice"]
        reference = await self._reference(voice["reference_object_key"])
        return await self.engine.clone(
            CloneRequest(
                text=job.inputs["text"],
                language=job.inputs["language"],
                reference_wav=reference,
                reference_transcript=voice["reference_transcript"],
                voice_id=str(voice["id"]),
            ),
            context,
        )

    async def design_preview(self, job: Job, context: JobContext) -> Audio:
        return await self.engine.design(
            DesignRequest(
                text=job.inputs["text"],
                language=job.inputs["language"],
                instruct=job.inputs["instruct"],
            ),
            context,
        )

    async def validate_clone(self, job: Job, context: JobContext) -> Audio:
        upload = await self._reference(job.inputs["reference_object_key"])
        wav, seconds = await self._normalised(upload)
        if job.inputs.get("reference_transcript") is None:
            await self._transcribe_reference(job, wav, context)
        await context.on_progress(1.0)
        return Audio(wav=wav, sample_rate=_wav_rate(wav), duration_seconds=seconds)

    async def _transcribe_reference(self, job: Job, wav: bytes, context: JobContext) -> None:
        """The transcribe-first path of a voice inserted without a transcript. The
        transcript is recorded before the job completes; a retry finds it in its inputs
        and does not transcribe again."""
        if self.transcriber is None or self.record_transcript is None:
            log.info(
                "transcription unavailable: the voice waits for a typed transcript",
                extra={"task_id": job.task_id, "voice_id": job.inputs.get("voice_id")},
            )
            return
        transcript = await self.transcriber.transcribe(
            TranscriptionJob(audio_wav=wav, language=str(job.inputs.get("language") or "Auto")),
            context,
        )
        outcome = await self.record_transcript.for_voice(job.task_id, transcript.check_usable())
        log.info(
            "reference transcribed: %s",
            outcome,
            extra={"task_id": job.task_id, "language": transcript.language},
        )

    async def transcribe_recording(self, job: Job, context: JobContext) -> Audio:
        """The record-then-edit flow: validate the recording as a reference, transcribe
        it, record the text, and store the normalised audio (where a voice with the same
        id would keep it)."""
        upload = await self._reference(job.inputs["audio_object_key"], "the recording")
        wav, seconds = await self._normalised(upload)
        if self.transcriber is None or self.record_transcript is None:
            raise TranscriptionUnavailable(
                "transcription is unavailable: no speech recogniser is configured; "
                "type the transcript instead"
            )
        transcript = await self.transcriber.transcribe(
            TranscriptionJob(audio_wav=wav, language=str(job.inputs.get("language") or "Auto")),
            context,
        )
        await self.record_transcript.for_transcription(
            job.task_id, transcript.check_usable(), seconds
        )
        await context.on_progress(1.0)
        return Audio(wav=wav, sample_rate=_wav_rate(wav), duration_seconds=seconds)


def _wav_rate(wav: bytes) -> int:
    return int.from_bytes(wav[24:28], "little") if wav[:4] == b"RIFF" else 0
