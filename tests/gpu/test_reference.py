from __future__ import annotations

import wave
from collections.abc import Callable
from io import BytesIO

import pytest

from gpu.reference import (
    MAX_BYTES,
    ReferenceAudioError,
    detect_format,
    normalise_for_listener,
    normalize_reference,
)

Recordings = Callable[[str], bytes]


def wav_properties(wav: bytes) -> tuple[int, int, int, int]:
    with wave.open(BytesIO(wav)) as reader:
        return (
            reader.getnchannels(),
            reader.getsampwidth(),
            reader.getframerate(),
            reader.getnframes(),
        )


@pytest.mark.parametrize("name, expected_format", [
    ("speech_wav", "wav"),
    ("speech_mp3", "mp3"),
    ("speech_m4a", "m4a"),
])  # fmt: skip
def test_accepted_formats_become_mono_16_bit_24_khz_wav(
    recordings: Recordings, name: str, expected_format: str
) -> None:
    reference = normalize_reference(recordings(name))
    assert reference.source_format == expected_format
    channels, width, rate, frames = wav_properties(reference.wav)
    assert (channels, width, rate) == (1, 2, 24_000)
    assert reference.sample_rate == 24_000
    assert reference.duration_seconds == pytest.approx(frames / 24_000)
    # espeak-ng's recording of the fixture text lasts well over ten seconds.
    assert 10 < reference.duration_seconds < 30


def test_durations_agree_across_formats(recordings: Recordings) -> None:
    wav = normalize_reference(recordings("speech_wav")).duration_seconds
    # Lossy encoders pad a few frames; a tenth of a second is plenty.
    assert normalize_reference(recordings("speech_mp3")).duration_seconds == pytest.approx(
        wav, abs=0.1
    )
    assert normalize_reference(recordings("speech_m4a")).duration_seconds == pytest.approx(
        wav, abs=0.1
    )


def test_too_short_says_how_long_it_is(recordings: Recordings) -> None:
    with pytest.raises(ReferenceAudioError) as caught:
        normalize_reference(recordings("short_wav"))
    assert caught.value.code == "too_short"
    assert str(caught.value) == "reference audio is 4.2 s long; it must be between 10 s and 5 min"


def test_too_long_says_how_long_it_is(recordings: Recordings) -> None:
    with pytest.raises(ReferenceAudioError) as caught:
        normalize_reference(recordings("long_wav"))
    assert caught.value.code == "too_long"
    assert (
        str(caught.value)
        == "reference audio is 5 min 2.0 s long; it must be between 10 s and 5 min"
    )


def test_too_large_is_refused_before_decoding() -> None:
    upload = b"RIFF\x00\x00\x00\x00WAVE" + bytes(MAX_BYTES)
    with pytest.raises(ReferenceAudioError) as caught:
        normalize_reference(upload)
    assert caught.value.code == "too_large"
    assert "it must be at most 50 MB" in str(caught.value)


@pytest.mark.parametrize("name, label", [("speech_ogg", "Ogg"), ("speech_flac", "FLAC")])
def test_other_audio_formats_are_unsupported(recordings: Recordings, name: str, label: str) -> None:
    with pytest.raises(ReferenceAudioError) as caught:
        normalize_reference(recordings(name))
    assert caught.value.code == "unsupported_format"
    assert label in str(caught.value)


@pytest.mark.parametrize("upload", [
    b"%PDF-1.7 this is a document, not a recording",
    b"\x89PNG\r\n\x1a\n" + bytes(64),
    b"plain text that someone renamed to voice.mp3",
])  # fmt: skip
def test_non_audio_is_refused_whatever_its_name(upload: bytes) -> None:
    with pytest.raises(ReferenceAudioError) as caught:
        normalize_reference(upload)
    assert caught.value.code == "not_audio"


def test_empty_and_corrupt_uploads(recordings: Recordings) -> None:
    with pytest.raises(ReferenceAudioError) as caught:
        normalize_reference(b"")
    assert caught.value.code == "empty"
    truncated = recordings("speech_m4a")[:400]
    with pytest.raises(ReferenceAudioError) as caught:
        normalize_reference(truncated)
    assert caught.value.code == "undecodable"
    assert "looks like M4A" in str(caught.value)


def test_format_detection_uses_magic_bytes(recordings: Recordings) -> None:
    assert detect_format(recordings("speech_wav")) == "wav"
    assert detect_format(recordings("speech_mp3")) == "mp3"
    assert detect_format(recordings("speech_m4a")) == "m4a"
    # An MP3 without an ID3 tag starts with a frame header.
    assert detect_format(b"\xff\xfb\x90\x64" + bytes(100)) == "mp3"


def test_listener_hook_returns_wav_and_seconds_and_raises_value_errors(
    recordings: Recordings,
) -> None:
    wav, seconds = normalise_for_listener(recordings("speech_mp3"))
    assert wav_properties(wav)[2] == 24_000 and seconds > 10
    with pytest.raises(ValueError, match="between 10 s and 5 min"):
        normalise_for_listener(recordings("short_wav"))
