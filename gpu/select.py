"""Choosing the engine from configuration.

`UTTER_ENGINE` = `modal` | `qwen-local` | `espeak` | `auto` (default). `auto` prefers
Modal when it is configured (credentials in MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or
~/.modal.toml, and an app name in UTTER_MODAL_APP), then Qwen3-TTS weights on disk
(gpu/qwen_local.py), then espeak-ng. The choice and the reason are logged.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gpu.engine import Engine, EngineUnavailable
from gpu.espeak_engine import EspeakEngine
from gpu.modal_engine import ModalEngine
from gpu.qwen_asr_local import LocalAsrWeights, QwenAsrLocalTranscriber, qwen_asr_stack_missing
from gpu.qwen_local import LocalWeights, QwenLocalEngine, qwen_stack_missing
from gpu.transcription import Transcriber

log = logging.getLogger(__name__)

ENGINE_NAMES = ("modal", "qwen-local", "espeak")


@dataclass(frozen=True)
class EngineChoice:
    name: str
    reason: str


def modal_configured(env: Mapping[str, str], home: Path | None = None) -> str | None:
    """Why Modal cannot be used, or None when it can."""
    if not env.get("UTTER_MODAL_APP"):
        return "UTTER_MODAL_APP is not set"
    has_token = bool(env.get("MODAL_TOKEN_ID") and env.get("MODAL_TOKEN_SECRET"))
    config_file = (home or Path.home()) / ".modal.toml"
    if not has_token and not config_file.is_file():
        return "no Modal credentials (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or ~/.modal.toml)"
    if importlib.util.find_spec("modal") is None:
        return "the `modal` package is not installed"
    return None


def choose_engine(
    name: str | None, env: Mapping[str, str], home: Path | None = None
) -> EngineChoice:
    """Which engine `name` (else UTTER_ENGINE, else auto) means here, and why; builds
    nothing."""
    requested = (name or env.get("UTTER_ENGINE") or "auto").strip().lower()
    if requested in ENGINE_NAMES:
        return EngineChoice(requested, f"asked for {requested}")
    if requested != "auto":
        raise EngineUnavailable(
            f"UTTER_ENGINE={requested!r} is not one of {', '.join((*ENGINE_NAMES, 'auto'))}"
        )
    modal_problem = modal_configured(env, home)
    if modal_problem is None:
        return EngineChoice("modal", f"auto: Modal is configured (app {env['UTTER_MODAL_APP']!r})")
    weights = LocalWeights.from_env(env)
    stack_problem = qwen_stack_missing()
    if weights.any and stack_problem is None:
        return EngineChoice("qwen-local", f"auto: {modal_problem}; Qwen3-TTS weights found on disk")
    local_problem = stack_problem if weights.any else "no Qwen3-TTS weights on disk"
    if shutil.which("espeak-ng"):
        return EngineChoice(
            "espeak",
            f"auto: {modal_problem}; {local_problem}; espeak-ng is installed (cannot clone)",
        )
    raise EngineUnavailable(
        f"no engine can run here: {modal_problem}; {local_problem}; espeak-ng is not installed"
    )


def build_engine(choice: EngineChoice, env: Mapping[str, str]) -> Engine:
    if choice.name == "modal":
        app_name = env.get("UTTER_MODAL_APP")
        if not app_name:
            raise EngineUnavailable(
                "UTTER_ENGINE=modal needs UTTER_MODAL_APP (the deployed app's name)"
            )
        return ModalEngine(app_name)
    if choice.name == "qwen-local":
        return QwenLocalEngine.from_env(env)
    return EspeakEngine()


def select_engine(
    name: str | None = None, env: Mapping[str, str] | None = None, home: Path | None = None
) -> Engine:
    """The engine `name` (`modal` | `qwen-local` | `espeak` | `auto`; default
    UTTER_ENGINE, else auto) resolves to, built, with the choice logged."""
    env = os.environ if env is None else env
    choice = choose_engine(name, env, home)
    engine = build_engine(choice, env)
    log.info("GPU engine: %s (%s)", choice.name, choice.reason)
    return engine


TRANSCRIBER_NAMES = ("modal", "qwen-local", "none")


def choose_transcriber(
    name: str | None, env: Mapping[str, str], home: Path | None = None
) -> EngineChoice:
    """Which speech recogniser `name` (else UTTER_TRANSCRIBER, else auto) means here,
    and why. `auto`: Modal when configured, then Qwen3-ASR weights on disk
    (UTTER_QWEN_ASR_MODEL_DIR), else none: voices inserted without a transcript then
    wait for a typed one."""
    requested = (name or env.get("UTTER_TRANSCRIBER") or "auto").strip().lower()
    if requested in TRANSCRIBER_NAMES:
        return EngineChoice(requested, f"asked for {requested}")
    if requested != "auto":
        raise EngineUnavailable(
            f"UTTER_TRANSCRIBER={requested!r} is not one of "
            f"{', '.join((*TRANSCRIBER_NAMES, 'auto'))}"
        )
    modal_problem = modal_configured(env, home)
    if modal_problem is None:
        return EngineChoice("modal", f"auto: Modal is configured (app {env['UTTER_MODAL_APP']!r})")
    weights = LocalAsrWeights.from_env(env)
    stack_problem = qwen_asr_stack_missing()
    if weights.model_dir is not None and stack_problem is None:
        return EngineChoice("qwen-local", f"auto: {modal_problem}; Qwen3-ASR weights found on disk")
    local_problem = stack_problem if weights.model_dir is not None else weights.missing_message(env)
    return EngineChoice(
        "none",
        f"auto: {modal_problem}; {local_problem}; voices inserted without a transcript "
        "wait for their owner to type one",
    )


def select_transcriber(
    name: str | None = None, env: Mapping[str, str] | None = None, home: Path | None = None
) -> Transcriber | None:
    """The transcriber `name` resolves to, built, with the choice logged; None for
    `none` (transcription unavailable)."""
    env = os.environ if env is None else env
    choice = choose_transcriber(name, env, home)
    transcriber: Transcriber | None = None
    if choice.name == "modal":
        from gpu.modal_transcriber import ModalTranscriber

        app_name = env.get("UTTER_MODAL_APP")
        if not app_name:
            raise EngineUnavailable(
                "UTTER_TRANSCRIBER=modal needs UTTER_MODAL_APP (the deployed app's name)"
            )
        transcriber = ModalTranscriber(app_name)
    elif choice.name == "qwen-local":
        transcriber = QwenAsrLocalTranscriber.from_env(env)
    log.info(
        "speech recogniser: %s (%s)",
        transcriber.name if transcriber else "none, transcription unavailable",
        choice.reason,
    )
    return transcriber
