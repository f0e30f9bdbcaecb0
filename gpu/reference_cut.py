"""Choosing a clean stretch of a long reference recording from its forced alignment.

Cloning works best from 5-20 s of clear speech, and a cut in the middle of a word
(or a transcript that does not match the cut audio) makes a worse clone. Given the
aligner's word timings (gpu.transcription.AlignedWord), `pick_reference_cut` picks a
span that starts and ends at phrase boundaries (pauses between words, or the edges of
the recording), lasts between `min_seconds` and `max_seconds`, and is as close to
`target_seconds` as the boundaries allow, preferring longer pauses at its edges. The
returned text is exactly the words inside the span, so audio and transcript agree.
`cut_wav` applies such a cut; `trim_silence` only removes the silence at the edges,
for references whose transcript (typed) has no word timings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpu.audio import decode_wav, encode_wav
from gpu.transcription import AlignedWord

# A gap between two words at least this long is a phrase boundary: shorter gaps occur
# inside phrases (plosives, breaths between words).
MIN_PAUSE_SECONDS = 0.2
# Silence kept around the words, taken only from the pause (never into a word).
EDGE_PADDING_SECONDS = 0.1


@dataclass(frozen=True)
class ReferenceCut:
    start: float  # seconds into the recording
    end: float
    text: str  # the words inside [start, end], space-joined

    @property
    def duration(self) -> float:
        return self.end - self.start


def pick_reference_cut(
    words: Sequence[AlignedWord],
    *,
    min_seconds: float = 5.0,
    max_seconds: float = 20.0,
    target_seconds: float = 12.0,
    min_pause: float = MIN_PAUSE_SECONDS,
    recording_seconds: float | None = None,
    joiner: str = " ",
) -> ReferenceCut | None:
    """The best span of whole phrases lasting min..max seconds, or None when no run of
    phrases fits (too little speech, or one phrase longer than `max_seconds`).

    `recording_seconds` bounds the padding after the last word; `joiner` is "" for
    languages written without spaces (the aligner splits Chinese into characters)."""
    if min_seconds <= 0 or max_seconds < min_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    ordered = sorted((w for w in words if w.end >= w.start), key=lambda w: w.start)
    if not ordered:
        return None
    count = len(ordered)
    # pause_before[i]: silence before word i (the recording's start counts as a long one).
    pause_before = [float("inf")] + [
        max(0.0, ordered[i].start - ordered[i - 1].end) for i in range(1, count)
    ]
    pause_after = [*pause_before[1:], float("inf")]
    starts = [i for i in range(count) if pause_before[i] >= min_pause]
    ends = [i for i in range(count) if pause_after[i] >= min_pause]

    best: tuple[float, int, int] | None = None
    for first in starts:
        for last in ends:
            if last < first:
                continue
            duration = ordered[last].end - ordered[first].start
            if duration > max_seconds:
                break  # later ends are longer still
            if duration < min_seconds:
                continue
            # Closeness to the target dominates; a clearer edge (longer pause, capped
            # at a second) breaks near-ties.
            edges = min(pause_before[first], 1.0) + min(pause_after[last], 1.0)
            score = abs(duration - target_seconds) - 0.5 * edges
            if best is None or score < best[0]:
                best = (score, first, last)
    if best is None:
        return None
    _, first, last = best
    start = ordered[first].start - min(EDGE_PADDING_SECONDS, pause_before[first] / 2)
    end = ordered[last].end + min(EDGE_PADDING_SECONDS, pause_after[last] / 2)
    if recording_seconds is not None:
        end = min(end, recording_seconds)
    return ReferenceCut(
        start=max(0.0, start),
        end=end,
        text=joiner.join(w.text for w in ordered[first : last + 1]),
    )


# Edge trimming: a 20 ms frame is sound when its peak reaches this fraction of the
# recording's peak (-26 dB); the silence before the first and after the last such
# frame goes, but for EDGE_PADDING_SECONDS.
SOUND_FRACTION_OF_PEAK = 0.05
FRAME_SECONDS = 0.02


def trim_silence(wav: bytes) -> bytes:
    """The WAV without its leading and trailing silence (the words are untouched, so
    any transcript of the whole still fits). Deterministic: a retry trims the same
    normalised upload to the same bytes. Silence only: returned as it is."""
    decoded = decode_wav(wav)
    samples, rate = decoded.samples, decoded.sample_rate
    if not samples:
        return wav
    threshold = max(1, int(max(max(samples), -min(samples)) * SOUND_FRACTION_OF_PEAK))
    frame = max(1, int(rate * FRAME_SECONDS))

    def loud(start: int) -> bool:
        piece = samples[start : start + frame]
        return max(piece) >= threshold or -min(piece) >= threshold

    first = next((i for i in range(0, len(samples), frame) if loud(i)), None)
    if first is None:
        return wav
    last = next(i for i in range((len(samples) - 1) // frame * frame, -1, -frame) if loud(i))
    padding = int(rate * EDGE_PADDING_SECONDS)
    start = max(0, first - padding)
    end = min(len(samples), last + frame + padding)
    if (start, end) == (0, len(samples)):
        return wav
    return encode_wav(samples[start:end], rate)


def cut_wav(wav: bytes, start: float, end: float) -> bytes:
    """Seconds `start`..`end` of a WAV (clamped to it), as a WAV."""
    decoded = decode_wav(wav)
    rate = decoded.sample_rate
    first = max(0, min(len(decoded.samples), round(start * rate)))
    last = max(first, min(len(decoded.samples), round(end * rate)))
    return encode_wav(decoded.samples[first:last], rate)


def wav_seconds(wav: bytes) -> float:
    decoded = decode_wav(wav)
    return len(decoded.samples) / decoded.sample_rate
