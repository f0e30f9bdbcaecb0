"""Fixtures for the engine tests: recordings made at test time with espeak-ng and
ffmpeg (no binary files in the repository), tiny Qwen3-TTS models, and prepared
references as generations name them."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.tiny_qwen_model import build_tiny_model
from gpu.engine import VoiceReference
from gpu.reference import normalize_reference

SPEECH = (
    "The quick brown fox jumps over the lazy dog. "
    "A reference recording should be clear, calm and long enough to learn a voice from. "
    "This sentence is here to make the recording last a little longer than ten seconds."
)


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bytes]:
    """`recordings(name)` -> bytes of a recording made once per session:
    speech_wav (espeak-ng, 22.05 kHz, >10 s), speech_mp3, speech_m4a, short_wav (~4 s),
    long_wav (5 min 2 s of tone, 8 kHz stereo), speech_ogg, speech_flac."""
    for tool in ("espeak-ng", "ffmpeg"):
        assert shutil.which(tool), f"{tool} is required (scripts/bootstrap.sh installs it)"
    folder = tmp_path_factory.mktemp("recordings")
    speech = folder / "speech.wav"
    _run(["espeak-ng", "-v", "en-us", "-s", "120", "-w", str(speech), SPEECH])
    made: dict[str, Path] = {"speech_wav": speech}

    def convert(name: str, *options: str) -> None:
        target = folder / f"{name}.{name.rsplit('_', 1)[-1]}"
        _run(
            [
                "ffmpeg",
                "-nostdin",
                "-y",
                "-loglevel",
                "error",
                "-i",
                str(speech),
                *options,
                str(target),
            ]
        )
        made[name] = target

    convert("speech_mp3", "-c:a", "libmp3lame", "-b:a", "64k")
    convert("speech_m4a", "-c:a", "aac", "-b:a", "64k")
    convert("speech_ogg", "-c:a", "libvorbis")
    convert("speech_flac", "-c:a", "flac")
    short = folder / "short.wav"
    _run(
        [
            "ffmpeg",
            "-nostdin",
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(speech),
            "-t",
            "4.2",
            str(short),
        ]
    )
    made["short_wav"] = short
    long = folder / "long.wav"
    _run([
        "ffmpeg", "-nostdin", "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", "sine=frequency=220:sample_rate=8000:duration=302",
        "-ac", "2", str(long),
    ])  # fmt: skip
    made["long_wav"] = long
    return lambda name: made[name].read_bytes()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random Qwen3-TTS models: {"base": folder, "design": folder}, laid out under
    one root like the Modal volume (<root>/<hub id>)."""
    root = tmp_path_factory.mktemp("qwen-weights")
    return {
        "root": root,
        "base": build_tiny_model(root / "Qwen" / "Qwen3-TTS-12Hz-0.6B-Base", "base"),
        "design": build_tiny_model(
            root / "Qwen" / "Qwen3-TTS-12Hz-1.7B-VoiceDesign", "voice_design"
        ),
    }


TRANSCRIPT = "The quick brown fox jumps over the lazy dog."


def store_reference(
    folder: Path, wav: bytes, voice_id: str = "voice-1", transcript: str = TRANSCRIPT
) -> VoiceReference:
    """A prepared reference as a generation names it: the WAV written where a file://
    URL (what the local storage stand-in signs) reaches it, with its content hash."""
    digest = hashlib.sha256(wav).hexdigest()
    path = folder / f"{digest}.wav"
    path.write_bytes(wav)
    return VoiceReference(voice_id, digest, transcript, path.resolve().as_uri())


def for_voice(reference: VoiceReference, voice_id: str) -> VoiceReference:
    """The same prepared reference under another voice id (another voice's prompt)."""
    return VoiceReference(voice_id, reference.sha256, reference.transcript, reference.url)


@pytest.fixture(scope="module")
def reference(
    recordings: Callable[[str], bytes], tmp_path_factory: pytest.TempPathFactory
) -> VoiceReference:
    """The normalised test recording, stored as a prepared reference."""
    wav = normalize_reference(recordings("speech_wav")).wav
    return store_reference(tmp_path_factory.mktemp("references"), wav)
