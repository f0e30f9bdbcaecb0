"""Fixtures for the webhook receiver: a database of its own per test, the receiver
served by uvicorn in-process as its own role (utter_billing), and users who buy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from billing.app import build_app
from billing.settings import BillingSettings
from devstack.settings import billing_url
from tests.billing.stripe_events import SIGNING_SECRET
from tests.listener.conftest import Admin


@pytest.fixture
def admin(fresh_database_url: str) -> Admin:
    return Admin(fresh_database_url)


@pytest.fixture
def billing_settings(fresh_database_url: str) -> BillingSettings:
    return BillingSettings(
        UTTER_BILLING_DATABASE_URL=billing_url(fresh_database_url),
        STRIPE_WEBHOOK_SECRET=SIGNING_SECRET,
    )


@pytest.fixture
async def webhook(billing_settings: BillingSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the receiver, running under uvicorn on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        build_app(billing_settings), host="127.0.0.1", port=port, lifespan="on", log_config=None
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
