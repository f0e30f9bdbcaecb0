"""A TEST ENGINE for the listener's tests: it speaks a tone and can be scripted to be
slow, hang, or fail. It stands in for Qwen3-TTS only where the engine's behaviour is
what a test varies; the engines themselves are tested in tests/gpu."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from gpu.engine import Audio, CloneRequest, DesignRequest, EngineError, JobContext
from gpu.tone_engine import SAMPLE_RATE, tone_wav

Script = Callable[[str, int], Exception | float | None]
"""Given (task id, how many times this task was called before), returns an exception
to raise, a delay in seconds before answering, or None for an immediate answer."""


class ScriptedEngine:
    name = "scripted (test engine)"
    can_clone = False

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or (lambda task_id, calls: None)
        self.calls: Counter[str] = Counter()
        self.clone_requests: list[CloneRequest] = []  # as the listener sent them
        self.cancelled: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()  # what a script's float('inf') waits for

    async def _speak(self, job: JobContext) -> Audio:
        before = self.calls[job.task_id]
        self.calls[job.task_id] += 1
        self.started.set()
        action = self.script(job.task_id, before)
        try:
            if isinstance(action, Exception):
                raise action
            if action == float("inf"):
                await self.release.wait()
            elif action:
                await asyncio.sleep(action)
        except asyncio.CancelledError:
            self.cancelled.append(job.task_id)
            raise
        await job.on_progress(1.0)
        return Audio(tone_wav(0.05), SAMPLE_RATE, 0.05)

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio:
        self.clone_requests.append(request)
        return await self._speak(job)

    async def design(self, request: DesignRequest, job: JobContext) -> Audio:
        return await self._speak(job)

    async def aclose(self) -> None:
        return None


def fail_times(times: int, error: EngineError) -> Script:
    return lambda task_id, calls: error if calls < times else None
