"""Choosing a 5-20 s stretch of a reference at phrase boundaries from word timings;
cutting and edge-trimming reference WAVs."""

from __future__ import annotations

import math
from array import array

import pytest

from gpu.audio import encode_wav
from gpu.reference_cut import (
    EDGE_PADDING_SECONDS,
    cut_wav,
    pick_reference_cut,
    trim_silence,
    wav_seconds,
)
from gpu.transcription import AlignedWord


def phrases(*spans: tuple[float, list[str]], word_seconds: float = 0.4) -> list[AlignedWord]:
    """Words spoken back to back from each phrase's start time (no pause inside)."""
    words = []
    for start, texts in spans:
        for i, text in enumerate(texts):
            words.append(
                AlignedWord(text, start + i * word_seconds, start + (i + 1) * word_seconds)
            )
    return words


# Four phrases of 8 words (3.2 s each) with pauses of 0.8 s, 0.3 s and 1.5 s between.
TALK = phrases(
    (0.5, ["one", "two", "three", "four", "five", "six", "seven", "eight"]),
    (4.5, ["nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen"]),
    (8.0, ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]),
    (12.7, ["red", "orange", "yellow", "green", "blue", "indigo", "violet", "white"]),
)


def test_the_cut_starts_and_ends_at_phrase_boundaries_near_the_target() -> None:
    cut = pick_reference_cut(TALK, target_seconds=12.0)
    assert cut is not None
    # Whole phrases only. The runs nearest 12 s: "nine".."white" (4.5-15.9 s, 11.4 s) and
    # "one".."theta" (0.5-11.2 s, 10.7 s); the first is nearer the target.
    assert cut.text.split()[0] == "nine" and cut.text.split()[-1] == "white"
    assert cut.start == pytest.approx(4.4)  # 0.1 s of the pause before it kept
    assert cut.end == pytest.approx(16.0)
    assert 5.0 <= cut.duration <= 20.0


def test_the_cut_never_ends_inside_a_phrase() -> None:
    for target in (5.0, 7.0, 9.0, 14.0, 18.0):
        cut = pick_reference_cut(TALK, target_seconds=target)
        assert cut is not None
        last = cut.text.split()[-1]
        assert last in ("eight", "sixteen", "theta", "white"), (target, cut)
        first = cut.text.split()[0]
        assert first in ("one", "nine", "alpha", "red"), (target, cut)


def test_the_text_is_exactly_the_words_inside_the_cut() -> None:
    cut = pick_reference_cut(TALK, min_seconds=5.0, max_seconds=8.0, target_seconds=7.0)
    assert cut is not None
    inside = [w.text for w in TALK if w.start >= cut.start and w.end <= cut.end]
    assert cut.text == " ".join(inside)
    assert 5.0 <= cut.duration <= 8.0 + 0.2


def test_short_pauses_inside_a_phrase_are_not_boundaries() -> None:
    words = [AlignedWord(f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(60)]  # 0.1 s gaps
    assert pick_reference_cut(words) is None  # one 29.9 s phrase: nowhere to cut
    # Were 0.1 s gaps boundaries, a cut near the target would be found.
    loose = pick_reference_cut(words, min_pause=0.05)
    assert loose is not None and abs(loose.duration - 12.0) < 0.6


def test_nothing_fits_when_there_is_too_little_speech_or_one_endless_phrase() -> None:
    assert pick_reference_cut([]) is None
    assert pick_reference_cut(phrases((0.0, ["short", "one"]))) is None
    endless = phrases((0.0, [f"w{i}" for i in range(80)]))  # 32 s without a pause
    assert pick_reference_cut(endless) is None


def test_the_end_padding_stays_inside_the_recording() -> None:
    cut = pick_reference_cut(TALK, target_seconds=16.0, recording_seconds=15.95)
    assert cut is not None and cut.text.split()[-1] == "white" and cut.end == 15.95


def test_characters_are_joined_without_spaces_for_languages_written_without_them() -> None:
    words = phrases(
        (0.0, list("今天天气很好我们出去走走吧")), (6.5, list("好的")), word_seconds=0.45
    )
    cut = pick_reference_cut(words, joiner="")
    assert cut is not None and cut.text == "今天天气很好我们出去走走吧好的"


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="min_seconds"):
        pick_reference_cut(TALK, min_seconds=10.0, max_seconds=5.0)


def tone_between_silences(before: float, tone: float, after: float, rate: int = 24_000) -> bytes:
    loud = [round(8_000 * math.sin(i / 5)) for i in range(int(tone * rate))]
    samples = array("h", [0] * int(before * rate) + loud + [0] * int(after * rate))
    return encode_wav(samples, rate)


def test_trimming_keeps_the_sound_and_a_tenth_of_a_second_of_silence_each_side() -> None:
    trimmed = trim_silence(tone_between_silences(2.0, 3.0, 4.0))
    assert wav_seconds(trimmed) == pytest.approx(3.0 + 2 * EDGE_PADDING_SECONDS, abs=0.021)
    assert trim_silence(trimmed) == trimmed  # nothing left to trim


def test_silence_alone_and_sound_to_the_edges_are_left_as_they_are() -> None:
    silent = encode_wav(array("h", [0] * 24_000), 24_000)
    assert trim_silence(silent) == silent
    full = tone_between_silences(0.0, 2.0, 0.0)
    assert trim_silence(full) == full


def test_a_cut_is_the_stretch_asked_for_clamped_to_the_recording() -> None:
    wav = tone_between_silences(1.0, 2.0, 1.0)
    assert wav_seconds(cut_wav(wav, 0.5, 2.5)) == pytest.approx(2.0)
    assert wav_seconds(cut_wav(wav, 3.5, 9.0)) == pytest.approx(0.5)
