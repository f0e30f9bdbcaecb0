"""Fixtures for the relay's tests: a database of their own with a per-user topic policy
on `realtime.messages`, and an in-process relay on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from devstack import testdb
from relay.server import RelayServer, serve
from tests.relay.support import ensure_user_topic_policy, relay_settings


@pytest.fixture(scope="session")
def relay_database_url(server_url: str) -> Iterator[str]:
    url = testdb.create(server_url, prefix="utter_relay")
    ensure_user_topic_policy(url)
    yield url
    testdb.drop(server_url, url)


@pytest.fixture
async def relay(relay_database_url: str) -> AsyncIterator[RelayServer]:
    async with serve(relay_settings(relay_database_url)) as server:
        yield server
