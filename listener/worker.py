"""The listener's loop: one consumer per queue woken by NOTIFY (with a slow poll as
the safety net), bounded concurrency per queue, and one supervised task per job.

A job's life: claim through the database, run the engine in its own asyncio task
(so a cancel, a timeout or a shutdown stops the engine and nothing else), store the
audio, settle through the database. The database decides every outcome; this loop
only reports what happened."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import random
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import psycopg

from gpu.engine import Audio, EngineError, EngineTimeout, JobContext, Segment
from listener.checkout import CheckoutConsumer, StripeCheckout
from listener.database import Database, jsonb, notifications
from listener.jobs import Handlers, Job
from listener.metrics import Metrics
from listener.settings import QUEUES, ListenerSettings
from listener.storage import ObjectStore

log = logging.getLogger("listener")

ENDED = ("completed", "failed", "cancelled")


@dataclass
class RunningJob:
    queue: str
    msg_id: int
    engine_task: asyncio.Task[Audio] | None = None
    # Why the engine was stopped: cancelled (by the user or a delete), ended (the task
    # ended elsewhere), lost (back in the queue or held by another listener), timeout,
    # shutdown.
    stop_reason: str | None = None
    progress: float | None = None
    progress_changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once the engine returned: heartbeats end at their next turn. A flag as well
    # as the cancel, since a cancel can be lost: on Python 3.11 asyncio.wait_for
    # (which psycopg_pool waits for a connection with) swallows a cancel that races
    # the connection it was waiting for.
    engine_done: bool = False

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.engine_task is not None and not self.engine_task.done():
            self.engine_task.cancel()


class Listener:
    def __init__(
        self,
        settings: ListenerSettings,
        database: Database,
        handlers: Handlers,
        store: ObjectStore,
        stripe_checkout: StripeCheckout | None = None,
    ) -> None:
        self.settings = settings
        self.db = database
        self.handlers = handlers
        self.store = store
        self.metrics = Metrics(engine=handlers.engine.name)
        self.stopping = asyncio.Event()
        self.wake = {queue: asyncio.Event() for queue in QUEUES}
        self.in_flight: dict[str, set[asyncio.Task[None]]] = {queue: set() for queue in QUEUES}
        self.running: dict[str, RunningJob] = {}  # by task id
        self.ready = asyncio.Event()  # set once LISTEN is up: work from now on is seen at once
        # Credit purchases: a queue of their own, consumed only where Stripe is configured.
        self.checkout = (
            CheckoutConsumer(settings, database, stripe_checkout, self.metrics, self._backoff)
            if stripe_checkout is not None
            else None
        )

    # -- the loop ---------------------------------------------------------------

    async def run(self) -> None:
        await self.db.open()
        log.info("listener started", extra={"worker_id": self.settings.worker_id})
        background = [asyncio.create_task(self._listen(), name="listen")]
        consumers = [asyncio.create_task(self._consume(q), name=f"consume:{q}") for q in QUEUES]
        if self.checkout is not None:
            consumers.append(
                asyncio.create_task(self.checkout.run(self.stopping), name="consume:checkout")
            )
        try:
            await self.stopping.wait()
        finally:
            for consumer in consumers:
                consumer.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)
            await self._drain()
            await cancel_and_wait(background)
            await self.store.close()
            await self.db.close()
            log.info("listener stopped", extra={"counts": dict(self.metrics.counts)})

    def stop(self) -> None:
        self.stopping.set()

    async def _listen(self) -> None:
        async def woken_after_reconnect() -> None:
            self.metrics.listening = True
            self.ready.set()
            for event in self.wake.values():
                event.set()
            if self.checkout is not None:
                self.checkout.wake.set()

        try:
            async for notify in notifications(self.settings.database_url, woken_after_reconnect):
                if notify.channel == "utter_jobs" and notify.payload in self.wake:
                    self.wake[notify.payload].set()
                elif notify.channel == "utter_jobs" and notify.payload == "checkout":
                    if self.checkout is not None:
                        self.checkout.wake.set()
                elif notify.channel == "utter_cancel" and notify.payload in self.running:
                    log.info("cancel requested", extra={"task_id": notify.payload})
                    self.running[notify.payload].stop("cancelled")
        finally:
            self.metrics.listening = False

    async def _consume(self, queue: str) -> None:
        limit = self.settings.concurrency(queue)
        slot_freed = asyncio.Event()
        while not self.stopping.is_set():
            free = limit - len(self.in_flight[queue])
            if free <= 0:
                slot_freed.clear()
                await slot_freed.wait()
                continue
            wanted = min(free, self.settings.batch_size)
            self.wake[queue].clear()
            if queue == "storage_cleanup":
                rows = await self.db.fetch(
                    "read_messages",
                    queue=queue,
                    quantity=wanted,
                    visibility_seconds=self.settings.visibility_timeout_seconds,
                )
                jobs = [self._clean_storage(row["msg_id"], row["message"]) for row in rows]
            else:
                # Read and claim in one round trip; only claimed tasks become jobs.
                rows = await self.db.fetch(
                    "claim_next",
                    queue=queue,
                    quantity=wanted,
                    visibility_seconds=self.settings.visibility_timeout_seconds,
                    worker_id=self.settings.worker_id,
                    max_attempts=self.settings.max_attempts,
                )
                jobs = [self._execute(queue, row) for row in rows if self._claimed(queue, row)]
            for job in jobs:
                task = asyncio.create_task(job)
                self.in_flight[queue].add(task)
                self.metrics.job_started(queue)
                task.add_done_callback(
                    functools.partial(self._finished, queue, slot_freed=slot_freed)
                )
            if len(rows) < wanted:
                await _wait(self.wake[queue], self.settings.poll_interval_seconds)

    def _claimed(self, queue: str, row: dict[str, Any]) -> bool:
        claim = row["claim"]
        outcome = claim["outcome"]
        ids = {"queue": queue, "msg_id": row["msg_id"], "claim": claim}
        if outcome == "claimed":
            task_id = str(claim["job"]["task_id"])
            if task_id not in self.running:
                return True
            # Our claim lapsed (e.g. the database was unreachable for longer than the
            # visibility timeout) and we read the message again: the run in progress
            # holds the task again, its heartbeats carry on, and nothing starts twice.
            log.info("already running here: claim re-attached", extra=ids)
            self.metrics.count("claim_reattached", queue)
            return False
        if outcome in ("malformed", "wrong_queue"):
            log.error("message dead-lettered: %s", outcome, extra=ids)
            self.metrics.count("malformed", queue)
        else:
            log.info("nothing to run: %s", outcome, extra=ids)
            self.metrics.count(f"claim_{outcome}", queue)
        return False

    def _finished(self, queue: str, task: asyncio.Task[None], *, slot_freed: asyncio.Event) -> None:
        self.in_flight[queue].discard(task)
        self.metrics.job_finished(queue)
        slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job crashed", exc_info=task.exception())

    async def _drain(self) -> None:
        """Shutdown: let running jobs finish within the grace period, then stop their
        engines and hand their tasks back."""
        jobs = [t for tasks in self.in_flight.values() for t in tasks]
        if self.checkout is not None:
            jobs.extend(self.checkout.in_flight)
        if not jobs:
            return
        log.info("waiting for %d running jobs", len(jobs))
        _, unfinished = await asyncio.wait(jobs, timeout=self.settings.shutdown_grace_seconds)
        for running in self.running.values():
            running.stop("shutdown")
        if unfinished:
            await asyncio.wait(unfinished, timeout=self.settings.shutdown_grace_seconds + 10)

    # -- one message ---------------------------------------------------------------

    async def _execute(self, queue: str, row: dict[str, Any]) -> None:
        job = Job.from_description(row["claim"]["job"])
        self.metrics.picked_up(job.type, time.time() - row["enqueued_at"].timestamp())
        ids = {"queue": queue, "msg_id": row["msg_id"], "task_id": job.task_id}
        if job.task_id in self.running:  # claimed twice in one batch: one run only
            log.info("already running here", extra=ids)
            return
        running = RunningJob(queue, int(row["msg_id"]))
        self.running[job.task_id] = running
        log.info("job started", extra=ids | {"type": job.type, "attempt": job.attempt})
        try:
            await self._run(job, running, ids)
        except psycopg.OperationalError as exc:
            # The database stayed out of reach past the retry deadline while settling:
            # the task is still claimed, and comes back after its visibility timeout.
            log.warning("could not settle: %s", exc, extra=ids)
            self.metrics.count("unsettled", job.type)
        finally:
            if self.running.get(job.task_id) is running:
                del self.running[job.task_id]
            log.info("job ended", extra=ids)

    async def _run(self, job: Job, running: RunningJob, ids: dict[str, Any]) -> None:
        if self.stopping.is_set():
            await self._settle_stopped(job, running, "shutdown", ids)
            return
        started = time.monotonic()
        keep_alive = asyncio.create_task(self._keep_alive(job, running))
        try:
            audio = await self._run_engine(job, running)
        except EngineError as exc:
            await self._fail(job, str(exc), exc.retryable, ids)
            return
        except asyncio.CancelledError:
            if _cancelled_from_outside():
                raise
            await self._settle_stopped(job, running, running.stop_reason or "cancelled", ids)
            return
        except Exception as exc:  # a bug or an outage: retry within the attempt limit
            log.exception("job raised", extra=ids)
            await self._fail(job, f"unexpected error: {exc!r}", True, ids)
            return
        finally:
            running.engine_done = True
            keep_alive.cancel()
            (outcome,) = await asyncio.gather(keep_alive, return_exceptions=True)
            if isinstance(outcome, Exception):
                log.warning("heartbeats stopped: %r", outcome, extra=ids)
        try:
            await self._deliver(job, audio, time.monotonic() - started, ids)
        except Exception as exc:  # storage or database outage: the work is retried
            log.exception("storing or settling the result failed", extra=ids)
            await self._fail(job, f"could not store the result: {exc!r}", True, ids)

    async def _run_engine(self, job: Job, running: RunningJob) -> Audio:
        async def progress(fraction: float) -> None:
            if not math.isfinite(fraction):
                return  # an engine's slip; worker.heartbeat would refuse it
            running.progress = fraction
            running.progress_changed.set()

        async def call_started(call_id: str) -> None:
            await self.db.fetch(
                "record_engine_call",
                task_id=uuid.UUID(job.task_id),
                worker_id=self.settings.worker_id,
                call_id=call_id,
            )

        async def segment_done(segment: Segment) -> None:
            await self._deliver_segment(job, segment)

        context = JobContext(
            task_id=job.task_id,
            resume_call_id=job.resume_call_id,
            on_call_started=call_started,
            on_progress=progress,
            keep_remote_work=lambda: running.stop_reason in ("shutdown", "lost"),
        )
        if job.streams_segments:
            context = dataclasses.replace(context, on_segment=segment_done)
        running.engine_task = asyncio.create_task(self.handlers.run(job, context))
        done, _ = await asyncio.wait(
            {running.engine_task}, timeout=self.settings.job_timeout_seconds
        )
        if not done:
            running.stop("timeout")
            with contextlib.suppress(asyncio.CancelledError):
                await running.engine_task
            raise EngineTimeout(
                f"the engine took longer than {self.settings.job_timeout_seconds:g}s"
            )
        return running.engine_task.result()

    async def _keep_alive(self, job: Job, running: RunningJob) -> None:
        """Heartbeats: extend the message's invisibility, write progress (at most once
        per progress interval), and stop the engine when the task ended elsewhere."""
        every = self.settings.visibility_timeout_seconds / 3
        # Starting the clock at the start means a job shorter than one progress
        # interval writes no progress at all: completion says it all.
        last_write = time.monotonic()
        while not running.engine_done:
            await _wait(running.progress_changed, every)
            pause = last_write + self.settings.progress_interval_seconds - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            running.progress_changed.clear()
            last_write = time.monotonic()
            status = await self.db.value(
                "heartbeat",
                task_id=uuid.UUID(job.task_id),
                worker_id=self.settings.worker_id,
                progress=running.progress,
                extend_seconds=self.settings.visibility_timeout_seconds,
            )
            if running.engine_done:
                return
            if status in ("completed", "failed", "cancelled", "missing"):
                running.stop("ended")
                return
            if status != "processing":
                # Back in the queue or held by another listener: the message is theirs.
                running.stop("lost")
                return

    async def _deliver_segment(self, job: Job, segment: Segment) -> None:
        """Stores a segment of the audio under the generation's folder and announces it to
        its owner (worker.record_segment), while the engine renders the rest. The
        final file carries the same audio, so a segment that cannot be stored is
        logged and skipped, never a reason to fail the job; whatever this stored is
        removed by the database when the task ends. A job of one segment streams
        nothing: that segment would come with the final file."""
        if segment.count < 2:
            return
        key = job.segment_key(segment.index)
        ids = {"task_id": job.task_id, "segment": segment.index, "segments": segment.count}
        try:
            await self.store.put(
                job.output_bucket,
                key,
                segment.audio.wav,
                content_type="audio/wav",
                owner=job.user_id,
            )
            outcome = await self.db.value(
                "record_segment",
                task_id=uuid.UUID(job.task_id),
                worker_id=self.settings.worker_id,
                segment_index=segment.index,
                segment_count=segment.count,
                object_key=key,
                duration_seconds=segment.audio.duration_seconds,
            )
            if outcome == "missing":
                # As for a final output: only this process knows the object exists.
                await self.store.delete(job.output_bucket, key)
        except Exception:
            log.warning(
                "segment not delivered; the final file will carry it", exc_info=True, extra=ids
            )
            self.metrics.count("segment_failed", job.type)
            return
        self.metrics.count(f"segment_{outcome}", job.type)
        log.debug("segment %s", outcome, extra=ids)

    async def _deliver(self, job: Job, audio: Audio, seconds: float, ids: dict[str, Any]) -> None:
        await self.store.put(
            job.output_bucket,
            job.output_key,
            audio.wav,
            content_type="audio/wav",
            owner=job.user_id,
        )
        # One call records the engine time (spent whatever the answer) and completes.
        outcome = await self.db.value(
            "settle_task",
            task_id=uuid.UUID(job.task_id),
            worker_id=self.settings.worker_id,
            engine=self.handlers.engine.name,
            gpu_seconds=round(seconds, 3),
            result=jsonb(
                {
                    "duration_seconds": audio.duration_seconds,
                    "generation_seconds": round(seconds, 3),
                }
            ),
        )
        if outcome == "missing":
            # The task row itself is gone, and with it the database's record of this
            # output: only this process knows the object exists.
            await self.store.delete(job.output_bucket, job.output_key)
            self.metrics.count("discarded_missing", job.type)
        elif outcome in ("cancelled", "failed", "already_completed", "not_running"):
            # Ended (or handed on) while the audio was being made. complete_task queued
            # the object's removal itself unless it is a live subject's audio, in the
            # same transaction as this answer, so a crash from here on keeps nothing.
            self.metrics.count(f"discarded_{outcome}", job.type)
        else:
            self.metrics.count("completed", job.type)
            self.metrics.completed(job.type, seconds)
        log.info("job %s", outcome, extra=ids | {"seconds": round(seconds, 3)})

    async def _fail(self, job: Job, reason: str, retryable: bool, ids: dict[str, Any]) -> None:
        delay = self._backoff(job.attempt) if retryable else 0.0
        outcome = await self.db.value(
            "fail_task",
            task_id=uuid.UUID(job.task_id),
            worker_id=self.settings.worker_id,
            reason=reason,
            retryable=retryable,
            retry_delay_seconds=round(delay),
            max_attempts=self.settings.max_attempts,
        )
        if outcome == "retrying":
            self.metrics.count("retried", job.type)
            asyncio.get_running_loop().call_later(delay, self.wake[job.type].set)
        else:
            self.metrics.count(outcome, job.type)
        log.warning(
            "job failed: %s", reason, extra=ids | {"outcome": outcome, "retry_in": round(delay, 1)}
        )

    async def _settle_stopped(
        self, job: Job, running: RunningJob, reason: str, ids: dict[str, Any]
    ) -> None:
        if reason == "shutdown":
            outcome = await self.db.value(
                "release_task", task_id=uuid.UUID(job.task_id), worker_id=self.settings.worker_id
            )
            self.metrics.count("released", job.type)
        elif reason == "lost":
            outcome = "left to the listener that holds it now"
        else:
            # The task already ended (cancelled, deleted, failed elsewhere).
            await self.db.fetch("archive_message", queue=running.queue, msg_id=running.msg_id)
            outcome = "archived"
            self.metrics.count("cancelled", job.type)
        log.info("job stopped (%s): %s", reason, outcome, extra=ids)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped."""
        ceiling = min(
            self.settings.backoff_max_seconds,
            self.settings.backoff_base_seconds * 2 ** max(attempt - 1, 0),
        )
        return random.uniform(ceiling / 2, ceiling)

    # -- storage cleanup -------------------------------------------------------------

    async def _clean_storage(self, msg_id: int, body: Any) -> None:
        """Removes the objects of deleted rows, then archives the message."""
        bucket = body.get("bucket") if isinstance(body, dict) else None
        keys = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(bucket, str) or not isinstance(keys, list):
            log.error(
                "malformed cleanup message dead-lettered", extra={"msg_id": msg_id, "body": body}
            )
            self.metrics.count("malformed", "storage_cleanup")
        else:
            for key in keys:
                # Through the Storage API (row and file together), then the database
                # confirms the object is gone; until it is, the message is not archived.
                await self.store.delete(bucket, str(key))
                await self.db.fetch("forget_object", bucket=bucket, object_key=str(key))
            self.metrics.count("objects_removed", "storage_cleanup")
        await self.db.fetch("archive_message", queue="storage_cleanup", msg_id=msg_id)


async def cancel_and_wait(tasks: Collection[asyncio.Task[Any]], seconds: float = 5.0) -> None:
    """Cancels background loops and waits for them, within a bound: a cancel that
    lands in a psycopg_pool checkout or connect can be swallowed on Python 3.11
    (asyncio.wait_for), and a loop that lost it must not hold the shutdown."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, still_running = await asyncio.wait(tasks, timeout=seconds)
    for task in still_running:
        log.warning("%s did not stop when cancelled; left behind", task.get_name())
        task.cancel()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Waits for the event or the time, whichever comes first. (asyncio.timeout, not
    wait_for: on 3.11 wait_for can swallow a cancel that races the event.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _cancelled_from_outside() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0
