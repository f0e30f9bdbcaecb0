"""Fixtures for the engine tests: recordings made at test time with espeak-ng and
ffmpeg (no binary files in the repository) and tiny Qwen3-TTS models."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.tiny_qwen_model import build_tiny_model

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
