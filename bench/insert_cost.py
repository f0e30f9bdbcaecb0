"""Insert cost: a user's generation insert under RLS with every trigger (validate,
charge, create the task, enqueue, broadcast) against a plain insert of the same row
into a copy of the table with no triggers and no RLS, and against a bare pgmq.send.
Each is one transaction, timed at the client."""

from __future__ import annotations

import time

from bench.common import Result, connect, timing, users_with_voices
from devstack.acting import act_as

INSERTS = 1500


def run(url: str) -> list[Result]:
    with connect(url) as admin:
        users = users_with_voices(admin, INSERTS // 10)
        admin.execute(
            "create table public.bench_plain_generations (like public.generations including defaults)"
        )
        admin.execute("select pgmq.create('bench_bare')")

    text = "The quick brown fox jumps over the lazy dog. " * 4
    full, plain, bare = [], [], []
    with connect(url) as conn:
        conn.autocommit = False
        for i in range(INSERTS):
            user_id, voice_id = users[i // 10]
            started = time.perf_counter()
            act_as(conn, user_id)
            conn.execute(
                "insert into generations (voice_id, text, language) values (%s, %s, 'English')",
                (voice_id, text),
            )
            conn.commit()
            full.append((time.perf_counter() - started) * 1000)

            started = time.perf_counter()
            conn.execute(
                "insert into public.bench_plain_generations (user_id, voice_id, voice_name, text, language) "
                "values (%s, %s, 'Bench voice', %s, 'English')",
                (user_id, voice_id, text),
            )
            conn.commit()
            plain.append((time.perf_counter() - started) * 1000)

            started = time.perf_counter()
            conn.execute("select pgmq.send('bench_bare', %s::jsonb)", ('{"task_id": "x"}',))
            conn.commit()
            bare.append((time.perf_counter() - started) * 1000)

    subject = timing(
        "insert",
        "user's generation insert (RLS + triggers + pgmq + broadcast)",
        full,
        key="ours.insert",
    )
    plain_result = timing("insert", "plain insert, same row, no triggers, no RLS", plain)
    bare_result = timing("insert", "bare pgmq.send", bare)
    assert subject.p50_ms and plain_result.p50_ms and bare_result.p50_ms
    subject.note = f"{subject.p50_ms / plain_result.p50_ms:.2f}x plain, {subject.p50_ms / bare_result.p50_ms:.2f}x pgmq.send (p50)"
    return [subject, plain_result, bare_result]
