"""Validating and normalising uploaded reference recordings for voice cloning.

Accepted: WAV, MP3 and M4A (AAC/ALAC in an MP4 container), at most 50 MB, 10 s to
5 min long. The format is detected from the bytes, never from the file name. Every
accepted upload is normalised to **mono, 16-bit PCM WAV at 24 kHz**: the rate both
Qwen3-TTS components use (the 12 Hz speech tokenizer and the speaker encoder), so the
GPU never resamples and the stored reference is the exact input the model sees.

Synchronous and blocking (ffmpeg runs as a subprocess with a timeout): the listener
calls it in a worker thread.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path

from gpu.audio import encode_wav

MAX_BYTES = 50 * 1024 * 1024
MIN_SECONDS = 10.0
MAX_SECONDS = 5 * 60.0
TARGET_SAMPLE_RATE = 24_000
DECODE_TIMEOUT_SECONDS = 60.0

ACCEPTED_FORMATS = ("wav", "mp3", "m4a")


class ReferenceAudioError(ValueError):
    """An upload that cannot be a reference. `code` is for machines (`too_short`,
    `too_long`, `too_large`, `empty`, `unsupported_format`, `not_audio`,
    `undecodable`), the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ReferenceDecoderUnavailable(RuntimeError):
    """ffmpeg is missing: an installation problem, not the uploader's fault."""


@dataclass(frozen=True)
class NormalizedReference:
    wav: bytes  # mono 16-bit PCM WAV at TARGET_SAMPLE_RATE
    sample_rate: int
    duration_seconds: float
    source_format: str  # "wav" | "mp3" | "m4a"


# Containers people upload that are audio but not accepted here (name for messages).
_OTHER_AUDIO_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"OggS", "Ogg"),
    (0, b"fLaC", "FLAC"),
    (0, b"\x1a\x45\xdf\xa3", "WebM/Matroska"),
    (0, b"#!AMR", "AMR"),
    (0, b"MThd", "MIDI"),
    (0, b".snd", "AU"),
    (0, b"0&\xb2u\x8e f\x11", "WMA/ASF"),
)
_MP4_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"mp41", b"mp42", b"isom", b"iso2", b"dash", b"3gp")


def detect_format(data: bytes) -> str:
    """'wav', 'mp3' or 'm4a' from magic bytes, else ReferenceAudioError."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or _is_mpeg_audio_frame(data):
        return "mp3"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand.startswith(_MP4_AUDIO_BRANDS) or brand in _MP4_AUDIO_BRANDS:
            return "m4a"
        raise ReferenceAudioError(
            "unsupported_format",
            f"MP4-family file with brand {brand.decode('latin-1')!r} is not supported; "
            "upload WAV, MP3 or M4A",
        )
    if data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC"):
        raise ReferenceAudioError(
            "unsupported_format", "AIFF is not supported; upload WAV, MP3 or M4A"
        )
    for offset, signature, name in _OTHER_AUDIO_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            raise ReferenceAudioError(
                "unsupported_format", f"{name} audio is not supported; upload WAV, MP3 or M4A"
            )
    raise ReferenceAudioError("not_audio", "the file is not an audio recording (WAV, MP3 or M4A)")


def _is_mpeg_audio_frame(data: bytes) -> bool:
    # An MPEG audio frame header: 11 sync bits, then version != reserved, layer III
    # (the only layer MP3 uses), bitrate index not 'bad', sample-rate index not reserved.
    if len(data) < 4 or data[0] != 0xFF or (data[1] & 0xE0) != 0xE0:
        return False
    version = (data[1] >> 3) & 0b11
    layer = (data[1] >> 1) & 0b11
    bitrate_index = data[2] >> 4
    rate_index = (data[2] >> 2) & 0b11
    return version != 0b01 and layer == 0b01 and bitrate_index != 0b1111 and rate_index != 0b11


def _describe_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.1f} s"


def _decode_to_pcm(data: bytes, source_format: str, timeout: float) -> array[int]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ReferenceDecoderUnavailable(
            "ffmpeg is not installed (Debian package 'ffmpeg'); it decodes reference uploads"
        )
    # A file, not a pipe: MP4 files often keep their index ('moov') at the end, which
    # ffmpeg can only reach by seeking.
    with tempfile.TemporaryDirectory(prefix="utter-ref-") as folder:
        source = Path(folder) / f"upload.{source_format}"
        source.write_bytes(data)
        command = [
            ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
            "-i", str(source),
            "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(TARGET_SAMPLE_RATE),
            "-c:a", "pcm_s16le", "-f", "s16le", "pipe:1",
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ReferenceAudioError(
                "undecodable",
                f"decoding the {source_format.upper()} file took longer than {timeout:g} s",
            ) from exc
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = detail[-1] if detail else f"ffmpeg exit status {result.returncode}"
        raise ReferenceAudioError(
            "undecodable",
            f"the file looks like {source_format.upper()} but could not be decoded: {reason}",
        )
    samples = array("h")
    pcm = result.stdout
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    return samples


def normalize_reference(
    data: bytes, *, decode_timeout: float = DECODE_TIMEOUT_SECONDS
) -> NormalizedReference:
    """Validate an upload and return it as mono 16-bit 24 kHz WAV, or raise
    ReferenceAudioError saying precisely what is wrong."""
    if not data:
        raise ReferenceAudioError("empty", "the file is empty")
    if len(data) > MAX_BYTES:
        raise ReferenceAudioError(
            "too_large",
            f"reference audio is {len(data) / (1024 * 1024):.1f} MB; it must be at most 50 MB",
        )
    source_format = detect_format(data)
    samples = _decode_to_pcm(data, source_format, decode_timeout)
    if not samples:
        raise ReferenceAudioError(
            "not_audio", f"the {source_format.upper()} file contains no audio"
        )
    duration = len(samples) / TARGET_SAMPLE_RATE
    if duration < MIN_SECONDS or duration > MAX_SECONDS:
        raise ReferenceAudioError(
            "too_short" if duration < MIN_SECONDS else "too_long",
            f"reference audio is {_describe_duration(duration)} long; "
            "it must be between 10 s and 5 min",
        )
    return NormalizedReference(
        wav=encode_wav(samples, TARGET_SAMPLE_RATE),
        sample_rate=TARGET_SAMPLE_RATE,
        duration_seconds=duration,
        source_format=source_format,
    )


def normalise_for_listener(upload: bytes) -> tuple[bytes, float]:
    """The listener's reference hook: (normalised WAV, seconds), or ReferenceAudioError
    (a ValueError whose message is fit for the user)."""
    reference = normalize_reference(upload)
    return reference.wav, reference.duration_seconds
