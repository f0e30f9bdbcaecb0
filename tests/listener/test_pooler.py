"""The listener's connection through a pooler, as on hosted Supabase: through a
session pooler it works as on a direct connection (LISTEN, prepared statements);
a transaction pooler is refused at start with a message naming the session pooler."""

from __future__ import annotations

import psycopg
import pytest

from devstack.settings import storage_admin_url, worker_url
from listener import preflight
from listener.settings import ConfigurationError, ListenerSettings
from tests.listener.conftest import Admin, RunListener, until
from tests.listener.pgbouncer import pgbouncer


async def test_a_transaction_pooler_is_refused(fresh_database_url: str) -> None:
    with (
        pgbouncer(worker_url(fresh_database_url), "transaction") as pooled,
        pytest.raises(ConfigurationError, match="transaction mode") as refused,
    ):
        await preflight.check(ListenerSettings(UTTER_LISTENER_DATABASE_URL=pooled))
    assert "session pooler" in str(refused.value)


async def test_the_listener_works_through_a_session_pooler(
    fresh_database_url: str, admin: Admin, run_listener: RunListener
) -> None:
    with pgbouncer(worker_url(fresh_database_url), "session") as pooled:
        await preflight.check(ListenerSettings(UTTER_LISTENER_DATABASE_URL=pooled))
        # Polling a minute apart: only a NOTIFY through the pooler wakes the listener
        # in time; and more than psycopg's 5 executions of each query, so its
        # server-side prepared statements are in use.
        user = admin.new_user()
        async with run_listener(
            database_url=pooled,
            poll_interval_seconds=60.0,
            # The local Storage API keeps its own, direct connection.
            storage_database_url=storage_admin_url(fresh_database_url),
        ) as listener:
            previews = [user.design_preview() for _ in range(7)]
            await admin.wait_until(
                "select count(*) = 7 from design_previews where id = any(%s) and status = 'completed'",
                (previews,),
            )
            # The listener counts a job once complete_task has committed: the rows
            # can be seen completed a moment before the last count.
            await until(lambda: listener.metrics.counts["completed"] == 7)
        with psycopg.connect(pooled) as conn:
            assert conn.execute("select current_user").fetchone() == ("utter_worker",)
