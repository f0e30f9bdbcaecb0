"""An engine that answers with a short tone, at once or after a set delay: for load
tests, benchmarks and the listener's own tests, where the engine's speed must not
hide the pipeline's. Never a default; it is chosen only by name (UTTER_ENGINE=tone,
with UTTER_TONE_DELAY_SECONDS to stand in for GPU time)."""

from __future__ import annotations

import asyncio
import io
import math
import struct
import wave

from gpu.engine import Audio, CloneRequest, DesignRequest, JobContext

SAMPLE_RATE = 24_000


def tone_wav(seconds: float, frequency: float = 440.0, sample_rate: int = SAMPLE_RATE) -> bytes:
    frames = int(seconds * sample_rate)
    samples = (
        int(8000 * math.sin(2 * math.pi * frequency * i / sample_rate)) for i in range(frames)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


class ToneEngine:
    name = "tone"
    can_clone = False

    def __init__(self, seconds: float = 0.05, delay_seconds: float = 0.0) -> None:
        self._audio = Audio(tone_wav(seconds), SAMPLE_RATE, seconds)
        self.delay_seconds = delay_seconds

    async def _speak(self, job: JobContext) -> Audio:
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        await job.on_progress(1.0)
        return self._audio

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio:
        return await self._speak(job)

    async def design(self, request: DesignRequest, job: JobContext) -> Audio:
        return await self._speak(job)

    async def aclose(self) -> None:
        return None
