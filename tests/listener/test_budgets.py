"""Daily budgets end to end: the listener records each completed task's engine
seconds, and once a user's budget is spent their next insert is refused with its own
SQLSTATE, while other users' work goes on."""

from __future__ import annotations

import psycopg
import pytest

from tests.listener.conftest import Admin, RunListener


async def test_a_spent_budget_refuses_the_next_insert(
    admin: Admin, run_listener: RunListener
) -> None:
    # Any completed job spends more than a millisecond of engine time.
    admin.rows(
        "update private.usage_budgets set daily_gpu_seconds = 0.001 where scope = 'per_user'"
    )
    spender, other = admin.new_user(), admin.new_user()
    async with run_listener():
        spender.design_preview()
        await admin.wait_until("select count(*) = 1 from tasks where status = 'completed'")
        spent = admin.value(
            "select gpu_seconds from private.daily_usage where user_id = %s", (spender.user_id,)
        )
        assert spent > 0

        with pytest.raises(psycopg.Error) as refused:
            spender.design_preview()
        assert refused.value.sqlstate == "PT403"
        assert str(refused.value).startswith("your daily GPU budget is spent (")

        other.design_preview()
        await admin.wait_until("select count(*) = 2 from tasks where status = 'completed'")
    assert (
        admin.value("select count(*) from design_previews where user_id = %s", (spender.user_id,))
        == 1
    )
