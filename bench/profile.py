"""Where the time goes: a sampling profile of the listener's hot path while it drains
a backlog in-process, and EXPLAIN (ANALYZE, BUFFERS) of the user's insert (with its
triggers) and of the queue read a claim starts with."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler

from bench.common import connect, make_backlog, users_with_voices, wait_until_all_completed
from devstack.acting import act_as
from devstack.settings import ROOT, worker_url
from gpu.tone_engine import ToneEngine
from listener.app import build_listener
from listener.settings import ListenerSettings

JOBS = 1000


async def _drain(url: str) -> None:
    settings = ListenerSettings(
        UTTER_LISTENER_DATABASE_URL=worker_url(url),
        engine="tone",
        concurrency_design_preview=8,
        batch_size=8,
        storage_dir=Path(tempfile.mkdtemp(prefix="utter-bench-")),
    )
    listener = build_listener(
        settings, engine=ToneEngine(), normalise_reference=lambda data: (data, 0.0)
    )
    running = asyncio.create_task(listener.run())
    await asyncio.to_thread(wait_until_all_completed, url)
    listener.stop()
    await running


def listener_profile(url: str) -> str:
    with connect(url) as admin:
        make_backlog(admin, JOBS // 10)
    profiler = Profiler(interval=0.0005, async_mode="enabled")
    started = time.perf_counter()
    with profiler:
        asyncio.run(_drain(url))
    seconds = time.perf_counter() - started
    text = profiler.output_text(unicode=False, color=False, show_all=False, short_mode=True)
    text = text.replace(f"{ROOT}/", "")  # the report names files by their place in the repository
    return f"{JOBS} jobs in {seconds:.1f} s in one process\n\n" + "\n".join(text.splitlines()[:60])


def explain_insert(url: str) -> str:
    with connect(url) as conn:
        ((user_id, voice_id),) = users_with_voices(conn, 1)
        conn.autocommit = False
        act_as(conn, user_id)
        rows = conn.execute(
            "explain (analyze, buffers, timing) insert into generations (voice_id, text, language) "
            "values (%s, 'Plan this, please.', 'English')",
            (voice_id,),
        ).fetchall()
        conn.rollback()
        read_plan = conn.execute(
            "explain (analyze, buffers) select * from pgmq.q_generate where vt <= clock_timestamp() "
            "order by msg_id limit 8 for update skip locked"
        ).fetchall()
        conn.rollback()
    lines = [str(next(iter(r.values()))) for r in rows]
    lines += ["", "-- the read a claim starts with (pgmq.read's inner query):"]
    lines += [str(next(iter(r.values()))) for r in read_plan]
    return "\n".join(lines)
