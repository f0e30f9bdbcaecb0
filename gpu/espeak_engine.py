"""The offline engine: real, intelligible speech from espeak-ng, with no network and
no GPU. It cannot clone a voice: clone requests are spoken in a stock voice picked by
language (logged, and documented in docs/gpu.md); design requests map the instruct's
gender/age/pace words onto espeak-ng voice variants, pitch and speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from dataclasses import dataclass

from gpu.audio import Pcm, decode_wav, encode_wav, join_chunks
from gpu.engine import (
    DEFAULT_TIMEOUT_SECONDS,
    Audio,
    CloneRequest,
    DesignRequest,
    EngineError,
    EngineUnavailable,
    JobContext,
    PermanentEngineError,
    Segment,
    deadline,
)
from gpu.text import speech_chunks

log = logging.getLogger(__name__)

# espeak-ng voice per product language.
LANGUAGE_VOICES = {
    "chinese": "cmn",
    "english": "en-us",
    "japanese": "ja",
    "korean": "ko",
    "german": "de",
    "french": "fr-fr",
    "russian": "ru",
    "portuguese": "pt",
    "spanish": "es",
    "italian": "it",
}
DEFAULT_VOICE = "en-us"
DEFAULT_PITCH = 50  # espeak-ng's own default
DEFAULT_WORDS_PER_MINUTE = 165
# espeak-ng synthesises one chunk per process; chunks give progress and let the
# joiner smooth the joints, and they bound the memory of one process.
CHUNK_CHARS = 400


@dataclass(frozen=True)
class VoiceSettings:
    voice: str  # e.g. "en-us+f3"
    pitch: int  # 0..99
    words_per_minute: int

    def arguments(self) -> list[str]:
        return ["-v", self.voice, "-p", str(self.pitch), "-s", str(self.words_per_minute)]


def voice_for_language(language: str, text: str) -> str:
    """The espeak-ng voice for a product language; "Auto" guesses from the script."""
    key = language.strip().lower()
    if key in LANGUAGE_VOICES:
        return LANGUAGE_VOICES[key]
    if key == "auto":
        return _voice_for_script(text)
    raise PermanentEngineError(f"unsupported language {language!r}")


def _voice_for_script(text: str) -> str:
    counts = {"ja": 0, "ko": 0, "cmn": 0, "ru": 0}
    for char in text:
        code = ord(char)
        if 0x3040 <= code <= 0x30FF:  # hiragana, katakana
            counts["ja"] += 1
        elif 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:  # hangul
            counts["ko"] += 1
        elif 0x4E00 <= code <= 0x9FFF:  # CJK ideographs (Japanese uses them too)
            counts["cmn"] += 1
        elif 0x0400 <= code <= 0x04FF:  # cyrillic
            counts["ru"] += 1
    if counts["ja"]:
        return "ja"
    best = max(counts, key=lambda name: counts[name])
    return best if counts[best] else DEFAULT_VOICE


_WORDS = re.compile(r"[a-z]+")
_FEMALE = {
    "female",
    "woman",
    "women",
    "girl",
    "lady",
    "feminine",
    "she",
    "mother",
    "grandmother",
    "grandma",
}
_MALE = {"male", "man", "men", "boy", "guy", "masculine", "he", "father", "grandfather", "grandpa"}
_CHILD = {"child", "kid", "girl", "boy", "young", "little", "teen", "teenage", "teenager"}
_OLD = {"old", "elderly", "aged", "senior", "grandmother", "grandfather", "grandma", "grandpa"}


def voice_for_instruct(language: str, text: str, instruct: str) -> VoiceSettings:
    """Map the words of a voice description onto espeak-ng's knobs, as well as a
    formant synthesiser can: gender and age pick a variant, pitch and pace words
    move pitch and speed."""
    ordered = _WORDS.findall(instruct.lower())
    words = set(ordered)
    base = voice_for_language(language, text)
    # The first gendered word wins: "a man doing a woman's voice" is a man.
    gender = next((w for w in ordered if w in _FEMALE or w in _MALE), None)
    female = gender in _FEMALE
    pitch = DEFAULT_PITCH
    speed = DEFAULT_WORDS_PER_MINUTE
    if words & _OLD:
        variant = "grandma" if female else "grandpa"
        pitch -= 5
        speed -= 25
    elif words & {"whisper", "whispering", "whispered", "breathy"}:
        variant = "whisperf" if female else "whisper"
    elif words & {"robot", "robotic", "synthetic", "mechanical"}:
        variant = "klatt"
    elif female:
        variant = "f3"
    elif gender is not None:
        variant = "m3"
    else:
        variant = "m1"
    if words & _CHILD and not words & _OLD:
        pitch += 25
        speed += 10
        if variant in ("m1", "m3"):
            variant = "m3"
    if words & {"deep", "low", "bass", "baritone", "gravelly", "husky"}:
        pitch -= 20
    if words & {"high", "squeaky", "bright", "soprano", "shrill"}:
        pitch += 15
    if words & {"fast", "quick", "quickly", "rapid", "energetic", "excited", "hurried"}:
        speed += 35
    if words & {"slow", "slowly", "calm", "relaxed", "measured", "soothing", "gentle"}:
        speed -= 25
    return VoiceSettings(
        voice=f"{base}+{variant}",
        pitch=max(0, min(99, pitch)),
        words_per_minute=max(80, min(350, speed)),
    )


class EspeakEngine:
    """Engine backed by the `espeak-ng` command-line program."""

    name = "espeak"
    can_clone = False

    def __init__(
        self,
        executable: str | None = None,
        *,
        timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
        chunk_chars: int = CHUNK_CHARS,
    ) -> None:
        found = executable or shutil.which("espeak-ng")
        if found is None:
            raise EngineUnavailable(
                "espeak-ng is not installed: install the Debian package 'espeak-ng' "
                "(scripts/bootstrap.sh does)"
            )
        self.executable = found
        self.timeout_seconds = timeout_seconds
        self.chunk_chars = chunk_chars

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio:
        settings = VoiceSettings(
            voice=voice_for_language(request.language, request.text),
            pitch=DEFAULT_PITCH,
            words_per_minute=DEFAULT_WORDS_PER_MINUTE,
        )
        log.info(
            "espeak engine cannot clone voices: task %s (voice %s) is spoken in the stock voice %s",
            job.task_id,
            request.reference.voice_id,
            settings.voice,
        )
        async with deadline(self.timeout_seconds, f"espeak-ng synthesis of task {job.task_id}"):
            return await self._speak(request.text, settings, job)

    async def design(self, request: DesignRequest, job: JobContext) -> Audio:
        settings = voice_for_instruct(request.language, request.text, request.instruct)
        log.info("espeak engine: task %s designs with %s", job.task_id, settings)
        async with deadline(self.timeout_seconds, f"espeak-ng synthesis of task {job.task_id}"):
            return await self._speak(request.text, settings, job)

    async def aclose(self) -> None:
        return None

    async def _speak(self, text: str, settings: VoiceSettings, job: JobContext) -> Audio:
        chunks = speech_chunks(text, self.chunk_chars)
        if not chunks:
            raise PermanentEngineError("nothing to say: the text is empty")
        pieces: list[Pcm] = []
        for index, chunk in enumerate(chunks):
            piece = await self._speak_chunk(chunk, settings)
            pieces.append(piece)
            segment = Audio(
                wav=encode_wav(piece.samples, piece.sample_rate),
                sample_rate=piece.sample_rate,
                duration_seconds=piece.duration_seconds,
            )
            await job.on_segment(Segment(index, len(chunks), segment))
            await job.on_progress((index + 1) / len(chunks))
        sample_rate = pieces[0].sample_rate
        samples = join_chunks([piece.samples for piece in pieces], sample_rate)
        return Audio(
            wav=encode_wav(samples, sample_rate),
            sample_rate=sample_rate,
            duration_seconds=len(samples) / sample_rate,
        )

    async def _speak_chunk(self, text: str, settings: VoiceSettings) -> Pcm:
        # The text goes on stdin, never the command line: it is user input.
        process = await asyncio.create_subprocess_exec(
            self.executable,
            *settings.arguments(),
            "--stdout",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            wav, errors = await process.communicate(text.encode("utf-8"))
        except BaseException:
            # Cancelled (user, shutdown, deadline): the process must not outlive us.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            message = errors.decode("utf-8", "replace").strip()
            raise EngineError(
                f"espeak-ng exited with status {process.returncode}: {message}", retryable=False
            )
        return decode_wav(wav)
