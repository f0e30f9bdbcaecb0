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
from gpu.qwen_local import LocalWeights, QwenLocalEngine, qwen_stack_missing

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
