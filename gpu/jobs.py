"""The unit of model work and its result, as plain data.

One home for the shape of a synthesis request/response: the Qwen runtime consumes
`SynthesisJob`s, the Modal app receives them as dicts (`to_wire`), and the Modal
engine turns the returned dicts back into `Audio` or an `EngineError`. Dicts of
builtins, not pickled classes, cross the Modal boundary so the deployed app and the
listener may run different versions of this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gpu.engine import Audio, CloneRequest, DesignRequest, EngineError, VoiceReference

JobKind = Literal["clone", "design"]


@dataclass(frozen=True)
class SynthesisJob:
    kind: JobKind
    text: str
    language: str
    instruct: str = ""  # design only
    # Clone only: the voice's prepared reference, by id, hash and a short-lived URL to
    # rebuild its clone prompt from; never the audio (gpu/voice_prompts.py).
    voice_id: str = ""
    reference_sha256: str = ""
    reference_transcript: str = ""
    reference_url: str = ""
    # Names this request in the app's control Dict (see CallControl): where the GPU
    # code marks it started and looks for its cancellation. Empty: no control.
    ticket: str = ""

    @classmethod
    def for_clone(cls, request: CloneRequest) -> SynthesisJob:
        return cls(
            kind="clone",
            text=request.text,
            language=request.language,
            voice_id=request.reference.voice_id,
            reference_sha256=request.reference.sha256,
            reference_transcript=request.reference.transcript,
            reference_url=request.reference.url,
        )

    @property
    def reference(self) -> VoiceReference:
        return VoiceReference(
            voice_id=self.voice_id,
            sha256=self.reference_sha256,
            transcript=self.reference_transcript,
            url=self.reference_url,
        )

    @classmethod
    def for_design(cls, request: DesignRequest) -> SynthesisJob:
        return cls(
            kind="design", text=request.text, language=request.language, instruct=request.instruct
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "language": self.language,
            "instruct": self.instruct,
            "voice_id": self.voice_id,
            "reference_sha256": self.reference_sha256,
            "reference_transcript": self.reference_transcript,
            "reference_url": self.reference_url,
            "ticket": self.ticket,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SynthesisJob:
        kind = data.get("kind")
        if kind not in ("clone", "design"):
            raise ValueError(f"unknown job kind {kind!r}")
        return cls(
            kind=kind,
            text=str(data.get("text", "")),
            language=str(data.get("language", "")),
            instruct=str(data.get("instruct", "")),
            voice_id=str(data.get("voice_id", "")),
            reference_sha256=str(data.get("reference_sha256", "")),
            reference_transcript=str(data.get("reference_transcript", "")),
            reference_url=str(data.get("reference_url", "")),
            ticket=str(data.get("ticket", "")),
        )


@dataclass(frozen=True)
class SynthesisResult:
    """Either audio or an error; errors travel as data so one bad job in a batch does
    not fail the others."""

    audio: Audio | None = None
    error_message: str = ""
    error_retryable: bool = False

    @classmethod
    def failure(cls, message: str, *, retryable: bool) -> SynthesisResult:
        return cls(error_message=message, error_retryable=retryable)

    def unwrap(self) -> Audio:
        if self.audio is None:
            raise EngineError(
                self.error_message or "synthesis failed", retryable=self.error_retryable
            )
        return self.audio

    def to_wire(self) -> dict[str, Any]:
        if self.audio is None:
            return {"error": {"message": self.error_message, "retryable": self.error_retryable}}
        return {
            "wav": self.audio.wav,
            "sample_rate": self.audio.sample_rate,
            "duration_seconds": self.audio.duration_seconds,
            "chunks_at_limit": list(self.audio.chunks_at_limit),
        }

    @classmethod
    def from_wire(cls, data: object) -> SynthesisResult:
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
            return cls(
                audio=Audio(
                    wav=bytes(data["wav"]),
                    sample_rate=int(data["sample_rate"]),
                    duration_seconds=float(data["duration_seconds"]),
                    # Absent from results of apps deployed before budgets existed.
                    chunks_at_limit=tuple(int(i) for i in data.get("chunks_at_limit", ())),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            return cls.failure(f"malformed result from the GPU app: {exc}", retryable=False)


CANCELLED_MESSAGE = "cancelled by its caller"


class CallControl:
    """The control channel between the Modal engine and the GPU code, kept in a
    `modal.Dict` (one per app) because Modal's own cancellation cannot single out one
    request: all inputs of a `@modal.batched` call share one context, so
    `FunctionCall.cancel()` terminates every request of that batch (modal 1.6.4,
    modal/_runtime/container_io_manager.py: each input id of a batch maps to the same
    IOContext, and a cancel event cancels that context). Instead the engine sets a
    per-request flag that the GPU code checks between chunk batches, dropping only
    that request; the GPU code in turn marks when a request starts executing, so the
    engine can tell time queued at Modal from time running.

    `store` is the Dict (sync calls in the container, `.aio` in the listener)."""

    @staticmethod
    def dict_name(app_name: str) -> str:
        return f"{app_name}-control"

    @staticmethod
    def cancel_key(ticket: str) -> str:
        return f"cancel:{ticket}"

    @staticmethod
    def started_key(ticket: str) -> str:
        return f"started:{ticket}"

    @staticmethod
    def call_handle(call_id: str, ticket: str) -> str:
        """What the listener records for re-attachment: the call and its ticket."""
        return f"{call_id}/{ticket}" if ticket else call_id

    @staticmethod
    def parse_handle(handle: str) -> tuple[str, str]:
        call_id, _, ticket = handle.partition("/")
        return call_id, ticket
