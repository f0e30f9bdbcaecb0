"""What each kind of task does, given its job description from `worker.claim_task`.
Each handler returns the audio to store; the worker stores it and settles the task."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gpu.engine import Audio, CloneRequest, DesignRequest, Engine, JobContext, PermanentEngineError
from listener.storage import ObjectMissing, ObjectStore

# Validates and normalises an uploaded reference: bytes in, (WAV bytes, seconds) out.
# Raises ValueError with a message fit for the user when the upload is unusable.
ReferenceNormaliser = Callable[[bytes], tuple[bytes, float]]


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


@dataclass(frozen=True)
class Handlers:
    engine: Engine
    store: ObjectStore
    normalise_reference: ReferenceNormaliser

    async def run(self, job: Job, context: JobContext) -> Audio:
        handler: Callable[[Job, JobContext], Awaitable[Audio]] = {
            "generate": self.generate,
            "design_preview": self.design_preview,
            "clone": self.validate_clone,
        }[job.type]
        return await handler(job, context)

    async def _reference(self, key: str) -> bytes:
        try:
            return await self.store.get("references", key)
        except ObjectMissing as exc:
            raise PermanentEngineError(f"the voice's reference audio is missing ({exc})") from None

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
        try:
            wav, seconds = await asyncio.to_thread(self.normalise_reference, upload)
        except ValueError as exc:
            raise UnusableReference(str(exc)) from None
        await context.on_progress(1.0)
        return Audio(wav=wav, sample_rate=_wav_rate(wav), duration_seconds=seconds)


def _wav_rate(wav: bytes) -> int:
    return int.from_bytes(wav[24:28], "little") if wav[:4] == b"RIFF" else 0
