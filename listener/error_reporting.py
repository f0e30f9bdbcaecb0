"""Optional error reporting to Sentry: enabled by UTTER_SENTRY_DSN, off otherwise.

sentry-sdk's logging integration turns every log record at ERROR or above (the
listener logs crashed jobs, dead letters and failed settles there) into an event, and
the records before it into breadcrumbs; nothing else in the listener knows Sentry."""

from __future__ import annotations

import logging
from typing import Any

from listener.settings import ConfigurationError, ListenerSettings

log = logging.getLogger("listener")


def configure(settings: ListenerSettings, *, transport: Any = None) -> bool:
    """Starts the Sentry client when a DSN is set; returns whether it did. `transport`
    replaces the HTTP transport (tests)."""
    if not settings.sentry_dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.logging import LoggingIntegration
    except ImportError:
        raise ConfigurationError(
            "invalid listener configuration: UTTER_SENTRY_DSN is set but sentry-sdk is not "
            "installed (pip install 'utter-backend[sentry]')"
        ) from None
    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.environment,
        server_name=settings.worker_id,
        # Errors only: traces and profiles would bill per job and say little more
        # than the Prometheus histograms.
        traces_sample_rate=0.0,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        **options,
    )
    log.info("error reporting to Sentry enabled", extra={"environment": settings.environment})
    return True
