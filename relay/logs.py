"""Structured log lines: an event name and key=value fields, one line each, so that a
developer can grep a join or a refusal by topic, user or reason."""

from __future__ import annotations

import json
import logging

LOGGER = logging.getLogger("relay")


def _format_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and all(c.isalnum() or c in "-_.:/@" for c in text):
        return text
    return json.dumps(text)


def log_event(event: str, /, level: int = logging.INFO, **fields: object) -> None:
    if not LOGGER.isEnabledFor(level):
        return
    parts = [f"event={event}"]
    parts.extend(
        f"{key}={_format_value(value)}" for key, value in fields.items() if value is not None
    )
    LOGGER.log(level, " ".join(parts))


def configure(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # websockets logs each handshake, /healthz included, as a "rejected" connection; the
    # relay's own `connected` / `connect_refused` lines say what happened.
    logging.getLogger("websockets").setLevel(max(level, logging.WARNING))
