"""Checkout jobs: a purchase's Stripe Checkout Session, created once and written back.

The database claims each purchase (`worker.claim_checkouts`), records the session
(`worker.record_checkout`) or the failure (`worker.fail_checkout`); this module only
talks to Stripe. The purchase id is the idempotency key, so a retry, a second
listener or a crash between Stripe's answer and the write-back gets the same session
back from Stripe instead of a second one."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import stripe

from listener.database import Database
from listener.metrics import Metrics
from listener.settings import ListenerSettings

log = logging.getLogger("listener.checkout")


@dataclass(frozen=True)
class CheckoutJob:
    purchase_id: str
    user_id: str
    attempt: int
    pack_name: str
    credits: int
    price_cents: int
    currency: str

    @classmethod
    def from_claim(cls, job: dict[str, Any]) -> CheckoutJob:
        return cls(
            purchase_id=str(job["purchase_id"]),
            user_id=str(job["user_id"]),
            attempt=int(job["attempt"]),
            pack_name=str(job["pack_name"]),
            credits=int(job["credits"]),
            price_cents=int(job["price_cents"]),
            currency=str(job["currency"]),
        )


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str
    expires_at: datetime.datetime | None


class CheckoutFailed(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class StripeCheckout:
    """Creates Checkout Sessions through the official client."""

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str,
        success_url: str,
        cancel_url: str,
        timeout_seconds: float,
    ) -> None:
        self.http = stripe.HTTPXClient(timeout=timeout_seconds)
        # Retries are the job's (with the listener's backoff and attempt limit), not
        # the client's, so every attempt is counted and visible on the purchase.
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base},
            http_client=self.http,
            max_network_retries=0,
        )
        self.success_url = success_url
        self.cancel_url = cancel_url

    async def create_session(self, job: CheckoutJob) -> CheckoutSession:
        ids = {"purchase_id": job.purchase_id, "user_id": job.user_id}
        try:
            session = await self.client.v1.checkout.sessions.create_async(
                params={
                    "mode": "payment",
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": job.currency,
                                "unit_amount": job.price_cents,
                                "product_data": {
                                    "name": f"Utter {job.pack_name}: {job.credits} credits"
                                },
                            },
                        }
                    ],
                    "success_url": self.success_url,
                    "cancel_url": self.cancel_url,
                    "client_reference_id": job.purchase_id,
                    "metadata": ids,
                    # Refunds and disputes name the payment, not the session.
                    "payment_intent_data": {"metadata": ids},
                },
                options={"idempotency_key": job.purchase_id},
            )
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise CheckoutFailed(f"Stripe unreachable: {exc.user_message}", retryable=True) from exc
        except (
            stripe.AuthenticationError,
            stripe.PermissionError,
            stripe.IdempotencyError,
            stripe.InvalidRequestError,
        ) as exc:
            # Retrying the same request cannot help: a bad key, a refused parameter,
            # or the key reused with other parameters (a bug).
            raise CheckoutFailed(
                f"Stripe refused the checkout ({exc.http_status}): {exc.user_message}",
                retryable=False,
            ) from exc
        except stripe.StripeError as exc:  # 5xx and anything Stripe may add later
            raise CheckoutFailed(
                f"Stripe error ({exc.http_status}): {exc.user_message}", retryable=True
            ) from exc
        if not session.url:
            raise CheckoutFailed(
                f"Stripe returned checkout session {session.id} without a url", retryable=False
            )
        expires_at = (
            datetime.datetime.fromtimestamp(session.expires_at, datetime.UTC)
            if session.expires_at
            else None
        )
        return CheckoutSession(session.id, session.url, expires_at)

    async def aclose(self) -> None:
        await self.http.close_async()  # type: ignore[no-untyped-call]  # stripe leaves it unannotated


class CheckoutConsumer:
    """The `checkout` queue's consumer: bounded concurrency, woken by NOTIFY, with the
    listener's slow poll as the safety net."""

    def __init__(
        self,
        settings: ListenerSettings,
        database: Database,
        stripe_checkout: StripeCheckout,
        metrics: Metrics,
        backoff: Callable[[int], float],
    ) -> None:
        self.settings = settings
        self.db = database
        self.stripe = stripe_checkout
        self.metrics = metrics
        self.backoff = backoff
        self.wake = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        limit = self.settings.concurrency_checkout
        slot_freed = asyncio.Event()
        while not stopping.is_set():
            free = limit - len(self.in_flight)
            if free <= 0:
                slot_freed.clear()
                await slot_freed.wait()
                continue
            wanted = min(free, self.settings.batch_size)
            self.wake.clear()
            rows = await self.db.fetch(
                "claim_checkouts",
                visibility_seconds=self.settings.visibility_timeout_seconds,
                quantity=wanted,
                max_attempts=self.settings.max_attempts,
            )
            for row in rows:
                claim = row["claim"]
                if claim["outcome"] != "claimed":
                    level = logging.ERROR if claim["outcome"] == "malformed" else logging.INFO
                    log.log(
                        level,
                        "no checkout to create: %s",
                        claim["outcome"],
                        extra={"msg_id": row["msg_id"], "claim": claim},
                    )
                    self.metrics.count(f"checkout_{claim['outcome']}")
                    continue
                task = asyncio.create_task(self._create(CheckoutJob.from_claim(claim["job"])))
                self.in_flight.add(task)
                self.metrics.in_flight += 1
                task.add_done_callback(functools.partial(self._finished, slot_freed=slot_freed))
            if len(rows) < wanted:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_interval_seconds):
                        await self.wake.wait()

    def _finished(self, task: asyncio.Task[None], *, slot_freed: asyncio.Event) -> None:
        self.in_flight.discard(task)
        self.metrics.in_flight -= 1
        slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("checkout job crashed", exc_info=task.exception())

    async def _create(self, job: CheckoutJob) -> None:
        ids = {"purchase_id": job.purchase_id, "attempt": job.attempt}
        try:
            session = await self.stripe.create_session(job)
        except CheckoutFailed as exc:
            await self._fail(job, str(exc), exc.retryable, ids)
            return
        except Exception as exc:  # a bug: retried within the attempt limit
            log.exception("checkout job raised", extra=ids)
            await self._fail(job, f"unexpected error: {exc!r}", True, ids)
            return
        try:
            outcome = await self.db.value(
                "record_checkout",
                purchase_id=uuid.UUID(job.purchase_id),
                session_id=session.id,
                url=session.url,
                expires_at=session.expires_at,
            )
        except psycopg.Error as exc:
            # Stripe has the session; the retry gets the same one back (same key).
            log.exception("recording the checkout failed", extra=ids)
            await self._fail(job, f"could not record the checkout: {exc!r}", True, ids)
            return
        self.metrics.count(f"checkout_{outcome}")
        log.info("checkout %s", outcome, extra=ids | {"session_id": session.id})

    async def _fail(
        self, job: CheckoutJob, reason: str, retryable: bool, ids: dict[str, Any]
    ) -> None:
        delay = self.backoff(job.attempt) if retryable else 0.0
        outcome = await self.db.value(
            "fail_checkout",
            purchase_id=uuid.UUID(job.purchase_id),
            reason=reason,
            retryable=retryable,
            retry_delay_seconds=round(delay),
            max_attempts=self.settings.max_attempts,
        )
        if outcome == "retrying":
            asyncio.get_running_loop().call_later(delay, self.wake.set)
        self.metrics.count(f"checkout_{outcome}")
        log.warning(
            "checkout failed: %s",
            reason,
            extra=ids | {"outcome": outcome, "retry_in": round(delay, 1)},
        )


def build_checkout(settings: ListenerSettings) -> StripeCheckout | None:
    key = settings.stripe_secret_key.get_secret_value()
    if not key:
        log.info("STRIPE_SECRET_KEY is not set: purchases wait in the checkout queue")
        return None
    return StripeCheckout(
        key,
        api_base=settings.stripe_api_base,
        success_url=settings.checkout_success_url,
        cancel_url=settings.checkout_cancel_url,
        timeout_seconds=settings.stripe_timeout_seconds,
    )
