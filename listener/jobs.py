"""What each kind of task does, given its job description from `worker.claim_task`.
Each handler returns the audio to store; the worker stores it and settles the task."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

from gpu.engine import (
    Audio,
    CloneRequest,
    DesignRequest,
    Engine,
    JobContext,
    PermanentEngineError,
    RetryableEngineError,
    VoiceReference,
)
from gpu.reference_cut import cut_wav, pick_reference_cut, trim_silence, wav_seconds
from gpu.transcription import Transcriber, Transcript, TranscriptionJob, can_align
from listener.storage import ObjectMissing, ObjectStore

log = logging.getLogger("listener")

# Validates and normalises an uploaded reference: bytes in, (WAV bytes, seconds) out.
# Raises ValueError with a message fit for the user when the upload is unusable.
ReferenceNormaliser = Callable[[bytes], tuple[bytes, float]]

# How long a reference URL sent to the speech side stays valid: the request may wait
# in Modal's queue (its own limit is an hour) before its container fetches it.
REFERENCE_URL_SECONDS = 2 * 3600
# Languages the forced aligner splits into characters: their cut's words join without spaces.
_UNSPACED_LANGUAGES = {"chinese", "japanese", "cantonese"}


class TranscriptRecorder(Protocol):
    """Writes machine transcripts through the database before their task completes;
    each returns the worker function's outcome."""

    async def for_voice(self, task_id: str, transcript: Transcript) -> str:
        """A clone job's transcript, to its voice (worker.record_transcript)."""
        ...

    async def for_transcription(self, task_id: str, transcript: Transcript, seconds: float) -> str:
        """A transcribe job's text (worker.record_transcription)."""
        ...


class ReferenceRecorder(Protocol):
    """Records a prepared reference through the database (worker.record_reference)
    before its task completes; returns the function's outcome."""

    async def __call__(
        self,
        task_id: str,
        sha256: str,
        *,
        cut: tuple[float, float] | None = None,
        transcript: Transcript | None = None,
    ) -> str: ...


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


class ReferenceNotRecorded(RetryableEngineError):
    """worker.record_reference did not record: the task ended or another listener holds
    it now. Nothing is stored, so a lapsed run never overwrites the reference the
    holder prepared and hashed."""


# worker.record_reference's outcomes after which this run may store its reference.
_RECORDED = ("recorded", "transcript_already_set")


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
    # None only where nothing is recorded (then a generation hashes its voice's
    # reference itself, as for voices prepared before hashes were recorded).
    record_reference: ReferenceRecorder | None = None

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
        """The voice's prepared reference goes by id, hash and a short-lived URL, never
        as audio: the speech side keeps the voice's clone prompt under that hash and
        fetches the reference only to rebuild a prompt it lacks."""
        voice = job.inputs["voice"]
        key = voice["reference_object_key"]
        try:
            url = await self.store.signed_url("references", key, REFERENCE_URL_SECONDS)
        except ObjectMissing as exc:
            raise PermanentEngineError(f"the voice's reference audio is missing ({exc})") from None
        sha256 = voice.get("reference_sha256") or sha256_hex(await self._reference(key))
        return await self.engine.clone(
            CloneRequest(
                text=job.inputs["text"],
                language=job.inputs["language"],
                reference=VoiceReference(
                    voice_id=str(voice["id"]),
                    sha256=sha256,
                    transcript=voice["reference_transcript"],
                    url=url,
                ),
            ),
            context,
        )

    async def design_preview(self, job: Job, context: JobContext) -> Audio:
        audio = await self.engine.design(
            DesignRequest(
                text=job.inputs["text"],
                language=job.inputs["language"],
                instruct=job.inputs["instruct"],
            ),
            context,
        )
        # A voice saved from this preview takes the preview's audio as its reference,
        # and this hash with it.
        if self.record_reference is not None:
            _check_recorded(await self.record_reference(job.task_id, sha256_hex(audio.wav)))
        return audio

    async def validate_clone(self, job: Job, context: JobContext) -> Audio:
        """Validates and normalises the upload, then prepares the voice's reference:
        cut to a clean 5-20 s stretch of whole phrases where a machine transcript with
        word timings says where they are, else the whole upload with the silence at its
        edges trimmed (a typed transcript has no timings, and the model needs the exact
        words of the audio it clones from). Its hash is recorded before the job stores
        it as the voice's normalised reference."""
        upload = await self._reference(job.inputs["reference_object_key"])
        wav, _ = await self._normalised(upload)
        reference = await self._prepare_reference(job, wav, context)
        await context.on_progress(1.0)
        return Audio(
            wav=reference, sample_rate=_wav_rate(reference), duration_seconds=wav_seconds(reference)
        )

    async def _prepare_reference(self, job: Job, wav: bytes, context: JobContext) -> bytes:
        recorded_cut = job.inputs.get("reference_cut")
        if recorded_cut is not None:
            # A retry: the cut and its transcript were recorded by an earlier attempt.
            cut = (float(recorded_cut["start"]), float(recorded_cut["end"]))
            piece = await asyncio.to_thread(cut_wav, wav, *cut)
            await self._record_reference(job, piece, cut=cut)
            return piece
        if job.inputs.get("reference_transcript") is None:
            transcript = await self._transcribe_reference(job, wav, context)
            if transcript is not None:
                cut_piece = await self._cut_from_transcript(job, wav, transcript)
                if cut_piece is not None:
                    return cut_piece
                outcome = await self._record_transcript(job, transcript)
                log.info("reference transcribed: %s", outcome, extra={"task_id": job.task_id})
        whole = await asyncio.to_thread(trim_silence, wav)
        await self._record_reference(job, whole)
        return whole

    async def _transcribe_reference(
        self, job: Job, wav: bytes, context: JobContext
    ) -> Transcript | None:
        """The transcribe-first path of a voice inserted without a transcript (with word
        timings where the recogniser can give them). None where no recogniser is
        configured: the voice then waits for a typed transcript."""
        if self.transcriber is None or self.record_transcript is None:
            log.info(
                "transcription unavailable: the voice waits for a typed transcript",
                extra={"task_id": job.task_id, "voice_id": job.inputs.get("voice_id")},
            )
            return None
        transcript = await self.transcriber.transcribe(
            TranscriptionJob(
                audio_wav=wav,
                language=str(job.inputs.get("language") or "Auto"),
                align=can_align(self.transcriber),
            ),
            context,
        )
        return transcript.check_usable()

    async def _cut_from_transcript(
        self, job: Job, wav: bytes, transcript: Transcript
    ) -> bytes | None:
        """The cut of whole phrases the word timings allow, recorded with its own words
        as the voice's transcript; None when there is none (no timings, too little
        speech, phrases too long) or the owner typed a transcript meanwhile."""
        if not transcript.words or self.record_reference is None:
            return None
        joiner = "" if transcript.language.lower() in _UNSPACED_LANGUAGES else " "
        chosen = pick_reference_cut(
            transcript.words, recording_seconds=wav_seconds(wav), joiner=joiner
        )
        if chosen is None:
            return None
        words = Transcript(chosen.text, transcript.language)
        try:
            words.check_usable()
        except PermanentEngineError:
            return None
        # Milliseconds: what the database keeps (real) and a retry cuts at, the same.
        cut = (round(chosen.start, 3), round(chosen.end, 3))
        piece = await asyncio.to_thread(cut_wav, wav, *cut)
        outcome = await self.record_reference(
            job.task_id, sha256_hex(piece), cut=cut, transcript=words
        )
        log.info("reference cut to %.3f-%.3f s: %s", *cut, outcome, extra={"task_id": job.task_id})
        _check_recorded(outcome)
        return None if outcome == "transcript_already_set" else piece

    async def _record_transcript(self, job: Job, transcript: Transcript) -> str:
        assert self.record_transcript is not None  # checked before transcribing
        return await self.record_transcript.for_voice(job.task_id, transcript)

    async def _record_reference(
        self, job: Job, wav: bytes, *, cut: tuple[float, float] | None = None
    ) -> None:
        if self.record_reference is not None:
            _check_recorded(await self.record_reference(job.task_id, sha256_hex(wav), cut=cut))

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


def _check_recorded(outcome: str) -> None:
    if outcome not in _RECORDED:
        raise ReferenceNotRecorded(
            f"the reference was not recorded ({outcome}): this listener no longer runs the task"
        )


def _wav_rate(wav: bytes) -> int:
    return int.from_bytes(wav[24:28], "little") if wav[:4] == b"RIFF" else 0
