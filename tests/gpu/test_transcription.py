"""Transcription jobs and results as data: what crosses the Modal boundary, and what
counts as no speech."""

from __future__ import annotations

import pytest

from gpu.engine import EngineError
from gpu.transcription import (
    AlignedWord,
    NoSpeechFound,
    Transcript,
    TranscriptionJob,
    TranscriptionResult,
)


def test_jobs_and_results_survive_the_wire() -> None:
    job = TranscriptionJob(b"RIFF....WAVE", "German", align=True)
    assert TranscriptionJob.from_wire(job.to_wire()) == job
    heard = Transcript("Guten Tag.", "German", (AlignedWord("Guten", 0.1, 0.4),))
    assert TranscriptionResult.from_wire(TranscriptionResult(heard).to_wire()).unwrap() == heard


def test_malformed_jobs_and_results_are_refused() -> None:
    with pytest.raises(ValueError, match="needs audio_wav bytes"):
        TranscriptionJob.from_wire({"language": "English"})
    broken = TranscriptionResult.from_wire({"language": "English"})
    assert "malformed result" in broken.error_message and not broken.error_retryable
    assert "malformed result" in TranscriptionResult.from_wire(["x"]).error_message


def test_an_error_result_says_whether_a_retry_helps() -> None:
    wire = TranscriptionResult.failure("CUDA out of memory", retryable=True).to_wire()
    with pytest.raises(EngineError, match="CUDA out of memory") as raised:
        TranscriptionResult.from_wire(wire).unwrap()
    assert raised.value.retryable


def test_a_transcript_too_short_to_be_a_reference_means_no_speech() -> None:
    assert Transcript("Ten chars!", "English").check_usable().text == "Ten chars!"
    with pytest.raises(NoSpeechFound, match=r"^no speech found in the recording; upload"):
        Transcript("   ", "").check_usable()
    with pytest.raises(NoSpeechFound, match=r"heard only 'Hm\.'") as raised:
        Transcript("Hm.", "English").check_usable()
    assert not raised.value.retryable
