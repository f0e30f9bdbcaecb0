from __future__ import annotations

import math
import struct
import wave
from array import array
from io import BytesIO

import pytest

from gpu.audio import WavFormatError, decode_wav, encode_wav, join_chunks, nearest_zero_crossing

RATE = 24_000


def sine(
    seconds: float, frequency: float, phase: float = 0.0, amplitude: int = 12_000
) -> array[int]:
    return array(
        "h",
        (
            round(amplitude * math.sin(phase + 2 * math.pi * frequency * i / RATE))
            for i in range(int(seconds * RATE))
        ),
    )


def largest_step(samples: array[int]) -> int:
    return max(abs(samples[i] - samples[i - 1]) for i in range(1, len(samples)))


def test_wav_round_trip_is_16_bit_mono_with_the_stated_rate() -> None:
    samples = sine(0.1, 440)
    wav = encode_wav(samples, RATE)
    with wave.open(BytesIO(wav)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, RATE)
        assert reader.getnframes() == len(samples)
    decoded = decode_wav(wav)
    assert decoded.sample_rate == RATE
    assert decoded.samples == samples


def test_streaming_headers_with_placeholder_sizes_are_read_to_the_end_of_the_bytes() -> None:
    # What espeak-ng --stdout writes: sizes it cannot know, near 2**31.
    body = array("h", [1, -2, 3, -4]).tobytes()
    header = b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16)
    header += b"data" + struct.pack("<I", 0x7FFFF000)
    decoded = decode_wav(header + body)
    assert list(decoded.samples) == [1, -2, 3, -4]
    assert decoded.sample_rate == 22050


def test_stereo_is_downmixed_and_non_pcm16_is_refused() -> None:
    buffer = BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(array("h", [100, 300, -100, -300]).tobytes())
    assert list(decode_wav(buffer.getvalue()).samples) == [200, -200]
    buffer = BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(8000)
        writer.writeframes(b"\x80\x81")
    with pytest.raises(WavFormatError, match="8-bit"):
        decode_wav(buffer.getvalue())
    with pytest.raises(WavFormatError):
        decode_wav(b"not a wav file at all")


def test_nearest_zero_crossing_finds_the_sign_change() -> None:
    samples = [5, 4, 3, 2, 1, -1, -2, -3]
    assert nearest_zero_crossing(samples, 2, window=4) == 5
    assert nearest_zero_crossing([5, 5, 5, 5], 2, window=1) is None


def test_join_crossfades_so_no_joint_clicks() -> None:
    # Cut mid-cycle at opposite phases: a plain concatenation steps by ~2x amplitude.
    first = sine(0.2, 220)
    second = sine(0.2, 330, phase=math.pi / 2)
    first = first[: len(first) - 37]
    plain = first + second
    joined = join_chunks([first, second], RATE)
    within_signals = max(largest_step(first), largest_step(second))
    assert largest_step(plain) > 2 * within_signals
    assert largest_step(joined) <= within_signals * 1.1


def test_join_smooths_a_dc_step_and_keeps_the_expected_length() -> None:
    high = array("h", [10_000] * 2_400)
    low = array("h", [-10_000] * 2_400)
    joined = join_chunks([high, low], RATE, crossfade_ms=10)
    assert len(joined) == 2 * 2_400 - 240
    assert largest_step(joined) < 2 * 20_000 / 240 + 2


def test_join_handles_no_chunks_one_chunk_and_tiny_chunks() -> None:
    assert len(join_chunks([], RATE)) == 0
    only = sine(0.05, 440)
    assert join_chunks([only], RATE) == only
    tiny = join_chunks([array("h", [1, 2]), array("h", [3])], RATE)
    assert len(tiny) == 2
