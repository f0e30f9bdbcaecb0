"""Several listeners on one queue share the work and never do a job twice; a backlog
of 10,000 messages drains with every task ended exactly once."""

from __future__ import annotations

from tests.listener.conftest import Admin, RunListener
from tests.listener.scripted_engine import ScriptedEngine


async def test_two_listeners_share_a_queue_without_doing_a_job_twice(
    admin: Admin, run_listener: RunListener
) -> None:
    engine = ScriptedEngine(
        lambda task_id, calls: 0.05
    )  # one engine, so calls are counted across both
    users = [admin.new_user() for _ in range(4)]
    async with (
        run_listener(engine, worker_id="listener-a", concurrency_design_preview=2) as first,
        run_listener(engine, worker_id="listener-b", concurrency_design_preview=2) as second,
    ):
        for _ in range(10):
            for user in users:
                user.design_preview()
        await admin.wait_until(
            "select count(*) = 40 from tasks where status = 'completed'", within=60
        )
    assert len(engine.calls) == 40 and set(engine.calls.values()) == {1}
    assert first.metrics.counts["completed"] > 0 and second.metrics.counts["completed"] > 0
    assert first.metrics.counts["completed"] + second.metrics.counts["completed"] == 40


async def test_a_backlog_of_ten_thousand_drains_with_every_task_ended_once(
    admin: Admin, run_listener: RunListener
) -> None:
    # 1,000 users with 10 previews each (the per-user limit of unfinished tasks), each
    # inserted as that user, through the same triggers a browser's insert fires.
    admin.rows(
        """
        do $$
        declare
          uid uuid;
        begin
          for i in 1..1000 loop
            uid := tests.create_user('backlog-' || i || '@example.com');
            perform set_config('request.jwt.claims', json_build_object('sub', uid, 'role', 'authenticated')::text, true);
            insert into design_previews (instruct, text, language)
            select 'A warm voice', 'Line ' || n, 'English' from generate_series(1, 10) n;
          end loop;
        end
        $$
        """
    )
    assert admin.value("select count(*) from pgmq.q_design_preview") == 10_000
    async with run_listener(concurrency_design_preview=8, batch_size=8) as listener:
        await admin.wait_until(
            "select count(*) = 0 from tasks where status <> 'completed'", within=600
        )
        await admin.wait_until("select count(*) = 0 from pgmq.q_design_preview")
    assert (
        admin.value("select count(*) from tasks where status = 'completed' and attempts = 1")
        == 10_000
    )
    assert admin.value("select count(*) from pgmq.a_design_preview") == 10_000
    completions = admin.value(
        "select count(distinct payload #>> '{record,id}') = count(*) from realtime.messages "
        "where payload->>'table' = 'tasks' and payload #>> '{record,status}' = 'completed'"
    )
    assert completions is True
    assert listener.metrics.counts["completed"] == 10_000
