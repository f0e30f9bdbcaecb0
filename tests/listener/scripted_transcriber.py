"""A TEST TRANSCRIBER for the listener's tests: it answers with a scripted transcript
(or error) instead of listening. It stands in for Qwen3-ASR only where what the
recogniser says is what a test varies; the real qwen-asr code is run on a tiny model
in tests/gpu/test_qwen_asr_runtime.py and end to end in tests/listener/test_transcription.py."""

from __future__ import annotations

from gpu.engine import EngineError, JobContext
from gpu.transcription import Transcript, TranscriptionJob


class ScriptedTranscriber:
    name = "scripted (test transcriber)"

    def __init__(self, answer: Transcript | EngineError, *, can_align: bool = False) -> None:
        self.answer = answer
        # Whether the listener may ask for word timings (the answer's `words`).
        self.can_align = can_align
        self.heard: list[TranscriptionJob] = []

    async def transcribe(self, job: TranscriptionJob, context: JobContext) -> Transcript:
        self.heard.append(job)
        if isinstance(self.answer, EngineError):
            raise self.answer
        await context.on_progress(1.0)
        return self.answer

    async def aclose(self) -> None:
        return None
