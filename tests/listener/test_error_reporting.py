"""Sentry, when UTTER_SENTRY_DSN is set: the listener's error log records become
events, tagged with the deployment's environment, and nothing is sent without a DSN.
The network is the boundary: sentry-sdk's real client runs, and a Transport (its
documented extension point, sentry_sdk/transport.py `Transport.capture_envelope`)
keeps the envelopes it would have sent."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from listener import error_reporting
from listener.settings import ListenerSettings


class KeptEnvelopes(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, object]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event" and item.payload.json is not None
        ]


@pytest.fixture
def kept() -> Iterator[KeptEnvelopes]:
    transport = KeptEnvelopes()
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # back to a client that sends nothing


def test_error_logs_become_events_for_the_environment(
    kept: KeptEnvelopes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="listener")
    settings = ListenerSettings(
        sentry_dsn="https://public@errors.invalid/42", environment="staging", worker_id="w-1"
    )
    assert error_reporting.configure(settings, transport=kept)
    logging.getLogger("listener").info("job started")
    logging.getLogger("listener").error("job crashed: %s", "boom")
    sentry_sdk.flush()

    (event,) = kept.events()
    assert event["environment"] == "staging"
    assert event["server_name"] == "w-1"
    assert event["logentry"]["formatted"] == "job crashed: boom"  # type: ignore[index]
    crumbs = event["breadcrumbs"]["values"]  # type: ignore[index]
    assert [c["message"] for c in crumbs] == ["error reporting to Sentry enabled", "job started"]


def test_without_a_dsn_nothing_is_configured(kept: KeptEnvelopes) -> None:
    assert not error_reporting.configure(ListenerSettings(), transport=kept)
    logging.getLogger("listener").error("not reported")
    sentry_sdk.flush()
    assert kept.events() == []
