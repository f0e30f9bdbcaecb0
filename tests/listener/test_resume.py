"""A task whose listener died after starting a remote engine call is resumed by the next
claim with that call's id, so an engine that can re-attach (Modal) does not pay twice."""

from __future__ import annotations

from gpu.engine import Audio, CloneRequest, DesignRequest, JobContext
from gpu.tone_engine import ToneEngine
from tests.listener.conftest import Admin, RunListener


class ReattachingEngine(ToneEngine):
    """The tone engine, noting which remote call each job asked to re-attach to."""

    def __init__(self) -> None:
        super().__init__()
        self.resumed: dict[str, str | None] = {}

    async def design(self, request: DesignRequest, job: JobContext) -> Audio:
        self.resumed[job.task_id] = job.resume_call_id
        return await super().design(request, job)

    async def clone(self, request: CloneRequest, job: JobContext) -> Audio:
        self.resumed[job.task_id] = job.resume_call_id
        return await super().clone(request, job)


async def test_a_new_claim_resumes_the_recorded_engine_call(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    preview_id = user.design_preview()
    task = admin.task_of("design_preview_id", preview_id)
    # A first listener claims the task, starts a remote call and records its id, then
    # dies: its message becomes visible again when the visibility timeout runs out.
    admin.rows(
        "select worker.claim_task('design_preview', %(msg)s, %(task)s, 'dead-listener', 3)",
        {"msg": task["msg_id"], "task": task["id"]},
    )
    assert admin.value(
        "select worker.record_engine_call(%s, 'dead-listener', 'fc-0123456789')", (task["id"],)
    )
    admin.rows("select pgmq.set_vt('design_preview', %s::bigint, 0)", (task["msg_id"],))

    engine = ReattachingEngine()
    async with run_listener(engine):
        await admin.wait_until(
            "select status = 'completed' from design_previews where id = %s", (preview_id,)
        )
    assert engine.resumed == {str(task["id"]): "fc-0123456789"}
    finished = admin.task_of("design_preview_id", preview_id)
    assert (finished["attempts"], finished["engine_call_id"]) == (2, "fc-0123456789")
