"""16-bit PCM helpers: WAV encoding/decoding and click-free joining of chunks.

Pure standard library (no numpy) so the listener and the offline engine can use it
without the model stack. Samples are `array('h')`: mono, signed 16-bit, native order.
"""

from __future__ import annotations

import io
import struct
import sys
import wave
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_CROSSFADE_MS = 12.0
# How far a cut may move to land on a zero crossing: a few ms is inaudible but
# usually finds one in voiced speech (fundamental above ~80 Hz).
ZERO_CROSSING_SEARCH_MS = 6.0


class WavFormatError(ValueError):
    """Bytes that are not a WAV file this module can read."""


@dataclass(frozen=True)
class Pcm:
    samples: array[int]  # array('h'), mono
    sample_rate: int

    @property
    def duration_seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def encode_wav(samples: array[int], sample_rate: int) -> bytes:
    """RIFF/WAVE bytes, 16-bit PCM mono."""
    if samples.typecode != "h":
        raise TypeError("samples must be array('h')")
    data = samples
    if sys.byteorder == "big":
        data = array("h", samples)
        data.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(data.tobytes())
    return buffer.getvalue()


def decode_wav(wav: bytes) -> Pcm:
    """Read 16-bit PCM WAV (mono or multi-channel, downmixed to mono).

    Tolerates the placeholder sizes streaming writers put in headers (espeak-ng's
    `--stdout` writes 0x7ffff000-ish sizes): a chunk is cut at the end of the bytes.
    """
    if len(wav) < 12 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise WavFormatError("not a RIFF/WAVE file")
    position = 12
    fmt: tuple[int, int, int, int] | None = None
    while position + 8 <= len(wav):
        chunk_id = wav[position : position + 4]
        (size,) = struct.unpack_from("<I", wav, position + 4)
        body_start = position + 8
        body = wav[body_start : min(body_start + size, len(wav))]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavFormatError("truncated fmt chunk")
            audio_format, channels, sample_rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            fmt = (audio_format, channels, sample_rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavFormatError("data chunk before fmt chunk")
            return _pcm_from_body(body, *fmt)
        position = body_start + size + (size & 1)
    raise WavFormatError("no data chunk")


def _pcm_from_body(body: bytes, audio_format: int, channels: int, rate: int, bits: int) -> Pcm:
    # 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which ffmpeg and sox use for plain PCM too.
    if audio_format not in (1, 0xFFFE) or bits != 16 or channels < 1 or rate < 1:
        raise WavFormatError(
            f"unsupported WAV encoding (format {audio_format}, {bits}-bit, {channels} channels)"
        )
    frame_bytes = 2 * channels
    usable = len(body) - len(body) % frame_bytes
    interleaved = array("h")
    interleaved.frombytes(body[:usable])
    if sys.byteorder == "big":
        interleaved.byteswap()
    if channels == 1:
        return Pcm(interleaved, rate)
    mono = array(
        "h",
        (
            sum(interleaved[i : i + channels]) // channels
            for i in range(0, len(interleaved), channels)
        ),
    )
    return Pcm(mono, rate)


def nearest_zero_crossing(samples: Sequence[int], index: int, window: int) -> int | None:
    """The index closest to `index` (within `window`) where the signal crosses or
    touches zero (between that sample and the one before), so a cut there starts or
    ends at silence; None if there is none."""
    last = len(samples) - 1
    for distance in range(window + 1):
        for candidate in (index - distance, index + distance):
            if 0 < candidate <= last:
                before, after = samples[candidate - 1], samples[candidate]
                if before == 0 or after == 0 or (before < 0) != (after < 0):
                    return candidate
    return None


def _trim_to_zero_crossings(
    samples: array[int], window: int, trim_start: bool, trim_end: bool
) -> array[int]:
    if len(samples) <= 2 * window:
        return samples
    start = (nearest_zero_crossing(samples, 0, window) if trim_start else None) or 0
    end = (nearest_zero_crossing(samples, len(samples) - 1, window) if trim_end else None) or len(
        samples
    )
    return samples[start:end]


def join_chunks(
    chunks: Sequence[array[int]],
    sample_rate: int,
    crossfade_ms: float = DEFAULT_CROSSFADE_MS,
) -> array[int]:
    """Concatenate chunks with a short linear crossfade at each joint, after moving
    each cut to a nearby zero crossing, so no joint produces a step (click)."""
    if not chunks:
        return array("h")
    window = int(sample_rate * ZERO_CROSSING_SEARCH_MS / 1000)
    last = len(chunks) - 1
    prepared = [
        _trim_to_zero_crossings(chunk, window, trim_start=i > 0, trim_end=i < last)
        for i, chunk in enumerate(chunks)
    ]
    joined = array("h", prepared[0])
    fade = int(sample_rate * crossfade_ms / 1000)
    for chunk in prepared[1:]:
        overlap = min(fade, len(joined), len(chunk))
        if overlap == 0:
            joined.extend(chunk)
            continue
        tail_start = len(joined) - overlap
        for i in range(overlap):
            weight = (i + 1) / (overlap + 1)
            mixed = joined[tail_start + i] * (1.0 - weight) + chunk[i] * weight
            joined[tail_start + i] = round(max(-32768.0, min(32767.0, mixed)))
        joined.extend(chunk[overlap:])
    return joined
