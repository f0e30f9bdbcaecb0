"""An engine that answers with a short tone per chunk of the text, at once or after a
set delay: for load tests, benchmarks and the listener's own tests, where the engine's
speed must not hide the pipeline's. Never a default; it is chosen only by name
(UTTER_ENGINE=tone, with UTTER_TONE_DELAY_SECONDS to stand in for GPU time).

Like the real engines it reports each chunk (`on_segment`) as it is done, and its
answer is the join of those chunks."""

from __future__ import annotations

import asyncio
import io
import math
import struct
import wave

from gpu.audio import decode_wav, encode_wav, join_chunks
from gpu.engine import Audio, CloneRequest, DesignRequest, JobContext, PermanentEngineError, Segment
from gpu.text import speech_chunks

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
        """`seconds` of tone per chunk; `delay_seconds` per request, spread over its
        chunks."""
        self._chunk = Audio(tone_wav(seconds), SAMPLE_RATE, seconds)
        self.delay_seconds = delay_seconds

    async def render_chunk(self, index: int, count: int) -> Audio:
        """One chunk's audio, after its share of the delay."""
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds / count)
        return self._chunk

    async def _speak(self, text: str, job: JobContext) -> Audio:
        chunks = speech_chunks(text)
        if not chunks:
            raise PermanentEngineError("nothing to say: the text is empty")
        pieces = []
        for index in range(len(chunks)):
            audio = await self.render_chunk(index, len(chunks))
            pieces.append(decode_wav(audio.wav).samples)
            await job.on_segment(Segment(index, len(chunks), audio))
            await job.on_progress((index + 1) / len(chunks))
        samples = join_chunks(pieces, SAMPLE_RATE)
        return Audio(encode_wav(samples, SAMPLE_RATE), SAMPLE_RATE, len(samples) / SAMPLE_RATE)

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio:
        return await self._speak(request.text, job)

    async def design(self, request: DesignRequest, job: JobContext) -> Audio:
        return await self._speak(request.text, job)

    async def aclose(self) -> None:
        return None
