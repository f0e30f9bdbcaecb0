from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gpu.engine import EngineUnavailable
from gpu.espeak_engine import EspeakEngine
from gpu.modal_engine import ModalEngine
from gpu.modal_transcriber import ModalTranscriber
from gpu.qwen_asr_local import QwenAsrLocalTranscriber
from gpu.qwen_local import QwenLocalEngine
from gpu.select import choose_engine, choose_transcriber, select_engine, select_transcriber

MODAL = {"UTTER_MODAL_APP": "utter-tts", "MODAL_TOKEN_ID": "ak-x", "MODAL_TOKEN_SECRET": "as-y"}


def test_auto_prefers_modal_when_configured(tmp_path: Path) -> None:
    choice = choose_engine(None, MODAL, home=tmp_path)
    assert choice.name == "modal" and "utter-tts" in choice.reason


def test_a_modal_config_file_counts_as_credentials(tmp_path: Path) -> None:
    (tmp_path / ".modal.toml").write_text("[default]\ntoken_id = 'x'\n")
    assert choose_engine(None, {"UTTER_MODAL_APP": "utter-tts"}, home=tmp_path).name == "modal"


def test_credentials_without_an_app_name_do_not_choose_modal(tmp_path: Path) -> None:
    env = {k: v for k, v in MODAL.items() if k != "UTTER_MODAL_APP"}
    choice = choose_engine(None, env, home=tmp_path)
    assert choice.name == "espeak" and "UTTER_MODAL_APP is not set" in choice.reason


def test_auto_then_prefers_local_weights(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    choice = choose_engine(None, {"UTTER_QWEN_MODEL_DIR": str(tiny_models["root"])}, home=tmp_path)
    assert choice.name == "qwen-local"


def test_auto_falls_back_to_espeak_and_says_why(tmp_path: Path) -> None:
    choice = choose_engine(None, {}, home=tmp_path)
    assert choice.name == "espeak"
    assert "no Modal credentials" not in choice.reason  # the app name is checked first
    assert "no Qwen3-TTS weights on disk" in choice.reason and "cannot clone" in choice.reason


def test_an_explicit_name_wins_over_the_environment(tmp_path: Path) -> None:
    assert choose_engine("espeak", MODAL, home=tmp_path).name == "espeak"
    assert choose_engine(None, {**MODAL, "UTTER_ENGINE": "espeak"}, home=tmp_path).name == "espeak"
    with pytest.raises(EngineUnavailable, match="not one of"):
        choose_engine("gpt", {}, home=tmp_path)


def test_select_builds_and_logs_the_choice(
    tmp_path: Path, tiny_models: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gpu.select")
    assert isinstance(select_engine("auto", {}, home=tmp_path), EspeakEngine)
    assert "GPU engine: espeak (auto:" in caplog.text
    assert isinstance(select_engine("modal", MODAL, home=tmp_path), ModalEngine)
    local = select_engine(
        "qwen-local", {"UTTER_QWEN_MODEL_DIR": str(tiny_models["root"])}, home=tmp_path
    )
    assert isinstance(local, QwenLocalEngine)


def test_explicit_engines_that_cannot_run_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="UTTER_MODAL_APP"):
        select_engine("modal", {}, home=tmp_path)
    with pytest.raises(EngineUnavailable, match="huggingface-cli download"):
        select_engine("qwen-local", {}, home=tmp_path)


def test_the_transcriber_prefers_modal_then_local_weights_then_none(
    tmp_path: Path, tiny_asr_model: Path
) -> None:
    assert choose_transcriber(None, MODAL, home=tmp_path).name == "modal"
    local = {"UTTER_QWEN_ASR_MODEL_DIR": str(tiny_asr_model)}
    assert choose_transcriber(None, local, home=tmp_path).name == "qwen-local"
    nothing = choose_transcriber(None, {}, home=tmp_path)
    assert nothing.name == "none"
    assert "UTTER_QWEN_ASR_MODEL_DIR is not set" in nothing.reason
    assert "wait for their owner to type one" in nothing.reason
    assert (
        choose_transcriber(None, {**MODAL, "UTTER_TRANSCRIBER": "none"}, home=tmp_path).name
        == "none"
    )
    with pytest.raises(EngineUnavailable, match="UTTER_TRANSCRIBER='whisper' is not one of"):
        choose_transcriber("whisper", {}, home=tmp_path)


def test_select_transcriber_builds_and_logs_the_choice(
    tmp_path: Path, tiny_asr_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gpu.select")
    assert select_transcriber("auto", {}, home=tmp_path) is None
    assert "speech recogniser: none, transcription unavailable (auto:" in caplog.text
    assert isinstance(select_transcriber("modal", MODAL, home=tmp_path), ModalTranscriber)
    local = select_transcriber(
        "auto", {"UTTER_QWEN_ASR_MODEL_DIR": str(tiny_asr_model)}, home=tmp_path
    )
    assert isinstance(local, QwenAsrLocalTranscriber)
    assert "speech recogniser: qwen-asr-local (auto:" in caplog.text
    with pytest.raises(EngineUnavailable, match="UTTER_MODAL_APP"):
        select_transcriber("modal", {}, home=tmp_path)
