"""Faults together, as they come in production: three listener processes, kill -9,
freezes longer than the visibility timeout, a database restart in immediate mode, and
users cancelling and deleting while work is in flight. Bounded in count (24 tasks) and
in time (every wait has a limit); the schedule is fixed, so only the exact moment each
fault lands varies from run to run.

At the end: every task ended once, no process ran one task twice at the same time, no
object is kept but the audio of live completed subjects, every user's credits match
the ledger and the work done, and no job crashed."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pytest

from devstack import cluster
from devstack.processes import spawn_listener
from listener.storage import STAGING_DIR
from tests.listener.conftest import Admin, Browser

LISTENERS = 3
USERS = 3
PREVIEWS_PER_USER = 8  # then one more each: under the limit of 10 unfinished per user
SETTINGS = {
    "UTTER_TONE_DELAY_SECONDS": "1.5",
    "UTTER_VISIBILITY_TIMEOUT_SECONDS": "3",
    "UTTER_POLL_INTERVAL_SECONDS": "0.5",
    "UTTER_CONCURRENCY_DESIGN_PREVIEW": "3",
    "UTTER_MAX_ATTEMPTS": "20",
    "UTTER_SHUTDOWN_GRACE_SECONDS": "5",
    "UTTER_BACKOFF_BASE_SECONDS": "0.2",
    "UTTER_BACKOFF_MAX_SECONDS": "1",
}
FREEZE_SECONDS = 5.0  # longer than the visibility timeout: the claims lapse
OUTAGE_SECONDS = 5.0  # likewise
SLOW_JOB_SECONDS = "15"


async def holds_work(admin: Admin, worker_id: str) -> bool:
    try:
        await admin.wait_until(
            "select count(*) > 0 from tasks where status = 'processing' and claimed_by = %s",
            (worker_id,),
            within=10,
        )
    except AssertionError:
        return False
    return True


class Fleet:
    def __init__(self, database_url: str, storage: Path, logs: Path) -> None:
        self.database_url = database_url
        self.storage = storage
        self.logs = logs
        self.spawned = 0
        self.processes = [self._spawn() for _ in range(LISTENERS - 1)]

    def _spawn(self, *, slow: bool = False) -> subprocess.Popen[bytes]:
        """A listener process with a log file of its own."""
        self.spawned += 1
        options = {
            "UTTER_TONE_DELAY_SECONDS": SLOW_JOB_SECONDS,
            "UTTER_CONCURRENCY_DESIGN_PREVIEW": "30",  # never full
        }
        return spawn_listener(
            self.database_url,
            self.storage,
            log=self.logs / f"listener-{self.spawned}.log",
            UTTER_WORKER_ID=f"chaos-{self.spawned}",
            **(SETTINGS | (options if slow else {})),
        )

    async def add_slow_listener(self) -> str:
        """A third listener whose jobs outlast the database outage, so their claims
        lapse while they still run, with room to read messages meanwhile, its own
        among them. Added once the others hold work, or it would take all of it."""
        self.processes.append(self._spawn(slow=True))
        await self._started()
        return f"chaos-{self.spawned}"

    async def _started(self) -> None:
        """Started means its signal handlers are in place: a later SIGTERM is a
        shutdown, not a death."""
        log = self.logs / f"listener-{self.spawned}.log"
        for _ in range(600):
            if log.exists() and '"listener started"' in log.read_text():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{log.name}: the listener did not start within 30 s")

    async def kill_and_restart(self, index: int) -> None:
        self.processes[index].send_signal(signal.SIGKILL)
        self.processes[index].wait(10)
        self.processes[index] = self._spawn()
        await self._started()

    async def freeze(self, index: int) -> None:
        self.processes[index].send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(FREEZE_SECONDS)
        finally:
            self.processes[index].send_signal(signal.SIGCONT)

    def stop(self) -> list[int]:
        for process in self.processes:
            process.send_signal(signal.SIGCONT)
            process.terminate()
        return [process.wait(30) for process in self.processes]


def ended_once_each(admin: Admin) -> bool:
    """Each task entered an ended state once: one end time among its broadcasts (a
    subject's deletion re-broadcasts its ended task, detached, with the same end)."""
    return bool(
        admin.value(
            "select bool_and(ends = 1) from ("
            "  select count(distinct payload #>> '{record,ended_at}') as ends"
            "  from realtime.messages where payload->>'table' = 'tasks'"
            "  and payload #>> '{record,status}' in ('completed', 'failed', 'cancelled')"
            "  group by payload #>> '{record,id}') per_task"
        )
    )


def log_entries(logs: Path) -> list[tuple[str, dict[str, object]]]:
    entries = []
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                entries.append((path.name, json.loads(line)))
    return entries


def overlapping_runs(entries: list[tuple[str, dict[str, object]]]) -> list[str]:
    """Tasks one process (one log file) started again while its previous run of them
    was still going."""
    running: Counter[tuple[str, object]] = Counter()
    overlaps = []
    for process, entry in entries:
        key = (process, entry.get("task_id"))
        if entry["msg"] == "job started":
            running[key] += 1
            if running[key] > 1:
                overlaps.append(str(entry["task_id"]))
        elif entry["msg"] == "job ended":
            running[key] = max(running[key] - 1, 0)
    return overlaps


@pytest.mark.parametrize(
    "second_wave", ["shared", "to_the_slow_listener"], ids=["shared", "slow-takes-wave"]
)
async def test_listeners_under_kills_freezes_restarts_cancels_and_deletes_keep_every_promise(
    admin: Admin, fresh_database_url: str, tmp_path: Path, second_wave: str
) -> None:
    storage, logs = tmp_path / "storage", tmp_path / "logs"
    logs.mkdir()
    users = [admin.new_user() for _ in range(USERS)]
    fleet = Fleet(fresh_database_url, storage, logs)
    previews: list[tuple[Browser, uuid.UUID]] = []
    try:
        for n in range(PREVIEWS_PER_USER):
            for user in users:
                previews.append((user, user.design_preview(text=f"Line number {n}.")))
        owner = {preview_id: user for user, preview_id in previews}
        await admin.wait_until(
            "select count(*) > 0 from tasks where status = 'processing' and claimed_by = 'chaos-1'",
            within=30,
        )
        slow = await fleet.add_slow_listener()
        # A listener frozen mid-job: others take its tasks over and complete them, the
        # owners delete them and the cleanup runs; then it wakes with late results.
        fleet.processes[0].send_signal(signal.SIGSTOP)
        held = [
            row["design_preview_id"]
            for row in admin.rows(
                "select design_preview_id from tasks "
                "where status = 'processing' and claimed_by = 'chaos-1'"
            )
        ]
        await fleet.kill_and_restart(1)
        for user, preview_id in previews[::6]:  # cancels, mid-flight or queued
            user.cancel(admin.task_of("design_preview_id", preview_id)["id"])
        await admin.wait_until(
            "select bool_and(status in ('completed', 'failed', 'cancelled')) from tasks "
            "where design_preview_id = any(%s)",
            (held,),
            within=60,
        )
        for preview_id in held:
            owner[preview_id].select(
                "delete from design_previews where id = %(id)s", {"id": preview_id}
            )
        await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup", within=30)
        fleet.processes[0].send_signal(signal.SIGCONT)
        fast = fleet.processes[:-1]
        if second_wave == "to_the_slow_listener":
            # The fast listeners frozen past the visibility timeout: the slow one takes
            # the wave, and the frozen ones wake into lapsed claims mid-delivery.
            for process in fast:
                process.send_signal(signal.SIGSTOP)
        for user in users:  # a second wave, for the slow listener to be busy with
            previews.append((user, user.design_preview(text="The second wave.")))
        # The fast listeners may win every message of the wave; a few more, one at a
        # time, give the slow one its chance (its runs across the outage are what this
        # adds; test_exactly_once.py covers the re-attach itself deterministically).
        for extra in range(len(users)):
            if await holds_work(admin, slow):
                break
            user = users[extra]
            previews.append((user, user.design_preview(text="One more for the slow one.")))
        if second_wave == "to_the_slow_listener":
            await asyncio.sleep(FREEZE_SECONDS)
            for process in fast:
                process.send_signal(signal.SIGCONT)
        # A database outage longer than the visibility timeout: every claim lapses
        # while its listener still runs (or settles) the job, and may read its own
        # message again when the database is back.
        await asyncio.to_thread(cluster.stop, "immediate")
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(cluster.start)
        for user, preview_id in previews[1::5]:  # deletes, whatever state they are in
            user.select("delete from design_previews where id = %(id)s", {"id": preview_id})
        await fleet.freeze(2)
        await fleet.kill_and_restart(0)
        await admin.wait_until(
            "select count(*) = 0 from tasks where status in ('pending', 'processing')", within=120
        )
        await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup", within=60)
    finally:
        exits = fleet.stop()
    assert exits == [0] * LISTENERS

    total = admin.value("select count(*) from tasks")
    assert total == len(previews)
    assert ended_once_each(admin)
    assert (
        admin.value(
            "select count(distinct payload #>> '{record,id}') from realtime.messages "
            "where payload->>'table' = 'tasks' and payload #>> '{record,status}' in ('completed', 'failed', 'cancelled')"
        )
        == total
    )

    live = {
        ("references", row["audio_object_key"])
        for row in admin.rows(
            "select audio_object_key from design_previews where status = 'completed'"
        )
    }
    assert all(key for _, key in live)
    stored = {
        (path.relative_to(storage).parts[0], "/".join(path.relative_to(storage).parts[1:]))
        for path in storage.rglob("*")
        if path.is_file() and path.relative_to(storage).parts[0] != STAGING_DIR
    }
    recorded = {
        (row["bucket_id"], row["name"])
        for row in admin.rows("select bucket_id, name from storage.objects")
    }
    assert stored == live
    assert recorded == live

    for user in users:
        credits = user.select("select credits from profiles")[0]["credits"]
        ledger = admin.value(
            "select sum(delta) from private.credit_ledger where user_id = %s", (user.user_id,)
        )
        completed = admin.value(
            "select count(*) from tasks where user_id = %s and status = 'completed'",
            (user.user_id,),
        )
        assert credits == ledger == 100 - completed

    entries = log_entries(logs)
    assert [e for _, e in entries if e["msg"] == "job crashed"] == []
    assert overlapping_runs(entries) == []
    assert any(e["msg"] == "job started" for _, e in entries)
