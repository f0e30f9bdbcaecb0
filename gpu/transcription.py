"""The speech recogniser interface the listener calls, and its unit of work as data.

A transcriber turns a normalised reference recording (gpu/reference.py's WAV) into
the words it says. Like the speech engines (gpu/engine.py) it is cancellation-safe
and raises `EngineError`s that say whether a retry can help; the listener uses it for
the clone job's transcribe-first path. Jobs and results cross the Modal boundary as
dicts of builtins (`to_wire`), like gpu/jobs.py's synthesis jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gpu.engine import EngineError, JobContext, PermanentEngineError

# Fewer characters than the database accepts as a reference transcript
# (voices_transcript_length): a recording that yields less holds no usable speech.
MIN_TRANSCRIPT_CHARS = 10


class NoSpeechFound(PermanentEngineError):
    """The recording holds no words the recogniser could make out."""


@dataclass(frozen=True)
class AlignedWord:
    """One word (or CJK character) of a transcript and where it is heard, in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str  # the recogniser's name for it ("English"), "" when unknown
    words: tuple[AlignedWord, ...] = ()  # empty unless a forced aligner ran

    def check_usable(self) -> Transcript:
        """Itself, or NoSpeechFound when it is too short to serve as a reference
        transcript."""
        if len(self.text.strip()) < MIN_TRANSCRIPT_CHARS:
            heard = f" (heard only {self.text.strip()!r})" if self.text.strip() else ""
            raise NoSpeechFound(
                f"no speech found in the recording{heard}; upload a recording of someone "
                "speaking, or type the transcript"
            )
        return self


@dataclass(frozen=True)
class TranscriptionJob:
    audio_wav: bytes  # mono 16-bit PCM WAV (any rate; normalised references are 24 kHz)
    language: str = "Auto"  # a product language; "Auto" lets the recogniser detect it
    align: bool = False  # also return word timings (needs the forced aligner)

    def to_wire(self) -> dict[str, Any]:
        return {"audio_wav": self.audio_wav, "language": self.language, "align": self.align}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TranscriptionJob:
        audio = data.get("audio_wav")
        if not isinstance(audio, bytes | bytearray) or not audio:
            raise ValueError("a transcription job needs audio_wav bytes")
        return cls(
            audio_wav=bytes(audio),
            language=str(data.get("language") or "Auto"),
            align=bool(data.get("align", False)),
        )


@dataclass(frozen=True)
class TranscriptionResult:
    """Either a transcript or an error, as data, so one bad recording in a batch does
    not fail the others."""

    transcript: Transcript | None = None
    error_message: str = ""
    error_retryable: bool = False

    @classmethod
    def failure(cls, message: str, *, retryable: bool) -> TranscriptionResult:
        return cls(error_message=message, error_retryable=retryable)

    def unwrap(self) -> Transcript:
        if self.transcript is None:
            raise EngineError(
                self.error_message or "transcription failed", retryable=self.error_retryable
            )
        return self.transcript

    def to_wire(self) -> dict[str, Any]:
        if self.transcript is None:
            return {"error": {"message": self.error_message, "retryable": self.error_retryable}}
        return {
            "text": self.transcript.text,
            "language": self.transcript.language,
            "words": [[w.text, w.start, w.end] for w in self.transcript.words],
        }

    @classmethod
    def from_wire(cls, data: object) -> TranscriptionResult:
        if not isinstance(data, dict):
            return cls.failure(
                f"malformed result from the GPU app: {type(data).__name__}", retryable=False
            )
        error = data.get("error")
        if isinstance(error, dict):
            return cls.failure(
                str(error.get("message", "")), retryable=bool(error.get("retryable"))
            )
        try:
            words = tuple(
                AlignedWord(str(text), float(start), float(end))
                for text, start, end in data.get("words") or ()
            )
            return cls(Transcript(str(data["text"]), str(data.get("language") or ""), words))
        except (KeyError, TypeError, ValueError) as exc:
            return cls.failure(f"malformed result from the GPU app: {exc}", retryable=False)


def can_align(transcriber: object) -> bool:
    """Whether `transcriber` returns word timings when a job asks for them (attribute
    `can_align`; a transcriber that does not say cannot)."""
    return bool(getattr(transcriber, "can_align", False))


@runtime_checkable
class Transcriber(Protocol):
    name: str

    async def transcribe(self, job: TranscriptionJob, context: JobContext) -> Transcript: ...

    async def aclose(self) -> None: ...
