"""The webhook receiver end to end: Stripe-signed deliveries over HTTP to uvicorn,
applied by billing.apply_stripe_event in the real database as role utter_billing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import httpx
import psycopg
from psycopg.types.json import Jsonb

from devstack.settings import ROOT, billing_url
from tests.billing import stripe_events
from tests.billing.stripe_events import body_and_signature
from tests.listener.conftest import Admin, Browser

WEBHOOK = "/stripe/webhook"


async def deliver(
    webhook: httpx.AsyncClient, payload: dict[str, object] | str, **signing: object
) -> httpx.Response:
    body, signature = body_and_signature(payload, **signing)  # type: ignore[arg-type]
    return await webhook.post(
        WEBHOOK,
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


def credits(admin: Admin, user: Browser) -> int:
    return int(admin.value("select credits from profiles where id = %s", (user.user_id,)))


def events_recorded(admin: Admin) -> int:
    return int(admin.value("select count(*) from private.stripe_events"))


async def test_a_verified_checkout_credits_the_pack_once_however_often_it_is_delivered(
    admin: Admin, webhook: httpx.AsyncClient
) -> None:
    user = admin.new_user()
    purchase = user.buy("starter")
    paid = stripe_events.checkout_completed(purchase, user.user_id)

    first = await deliver(webhook, paid)
    assert first.status_code == 200, first.text
    assert first.json() == {"outcome": "credited", "purchase_id": str(purchase)}
    assert credits(admin, user) == 100 + 60

    again = await deliver(webhook, paid)  # Stripe redelivers, re-signed each time
    assert again.status_code == 200
    assert again.json()["outcome"] == "duplicate"
    assert credits(admin, user) == 160
    assert user.select("select status from purchases") == [{"status": "paid"}]


async def test_concurrent_duplicate_deliveries_credit_once(
    admin: Admin, webhook: httpx.AsyncClient
) -> None:
    user = admin.new_user()
    purchase = user.buy("studio")
    same = stripe_events.checkout_completed(purchase, user.user_id, amount_total=999)
    # The same event many times over, and other events for the same paid session.
    others = [
        stripe_events.checkout_completed(purchase, user.user_id, amount_total=999) for _ in range(5)
    ]
    answers = await asyncio.gather(*(deliver(webhook, e) for e in [same] * 15 + others))

    assert {a.status_code for a in answers} == {200}
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes.count("credited") == 1
    assert outcomes.count("duplicate") == 14
    assert outcomes.count("already_credited") == 5
    assert credits(admin, user) == 100 + 240
    assert (
        admin.value(
            "select count(*) from private.credit_ledger where purchase_id = %s and reason = 'purchase'",
            (purchase,),
        )
        == 1
    )


def test_racing_transactions_credit_once(admin: Admin) -> None:
    """Threads on their own connections as utter_billing, released together, each
    applying the same payment (half of them the very same event)."""
    user = admin.new_user()
    purchase = user.buy("starter")
    shared = stripe_events.checkout_completed(purchase, user.user_id)
    payloads = [shared] * 4 + [
        stripe_events.checkout_completed(purchase, user.user_id) for _ in range(4)
    ]
    start = threading.Barrier(len(payloads))
    outcomes: list[str] = []

    def apply(payload: dict[str, object]) -> None:
        with psycopg.connect(billing_url(admin.url), autocommit=True) as conn:
            start.wait()
            row = conn.execute(
                "select billing.apply_stripe_event(%s) ->> 'outcome'", (Jsonb(payload),)
            ).fetchone()
            assert row is not None
            outcomes.append(str(row[0]))

    threads = [threading.Thread(target=apply, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == sorted(["credited"] + ["duplicate"] * 3 + ["already_credited"] * 4)
    assert credits(admin, user) == 160
    assert admin.value(
        "select bool_and(p.credits = (select sum(delta) from private.credit_ledger l where l.user_id = p.id)) from profiles p"
    )


async def test_bad_signatures_are_refused_and_change_nothing(
    admin: Admin, webhook: httpx.AsyncClient
) -> None:
    user = admin.new_user()
    purchase = user.buy("starter")
    paid = stripe_events.checkout_completed(purchase, user.user_id)
    body, good = body_and_signature(paid)

    cases = {
        "signed with another secret": await deliver(webhook, paid, secret="whsec_someone_else"),
        "signed five minutes and one second ago": await deliver(
            webhook, paid, timestamp=int(time.time()) - 301
        ),
        "no signature": await webhook.post(WEBHOOK, content=body),
        "a garbled header": await webhook.post(
            WEBHOOK, content=body, headers={"Stripe-Signature": "v1=abc"}
        ),
        "a body changed after signing": await webhook.post(
            WEBHOOK,
            content=body.replace(b'"amount_total": 299', b'"amount_total": 2990'),
            headers={"Stripe-Signature": good},
        ),
    }
    for case, answer in cases.items():
        assert answer.status_code == 400, case
        assert answer.json()["error"].startswith("invalid Stripe-Signature"), case
    assert (
        "Timestamp outside the tolerance zone"
        in cases["signed five minutes and one second ago"].json()["error"]
    )
    assert events_recorded(admin) == 0
    assert credits(admin, user) == 100


async def test_malformed_bodies_and_unknown_events_get_clear_4xx_and_change_nothing(
    admin: Admin, webhook: httpx.AsyncClient
) -> None:
    user = admin.new_user()
    purchase = user.buy("starter")

    not_json = await deliver(webhook, "this is not json")
    assert not_json.status_code == 400
    assert not_json.json()["error"].startswith("body is not JSON")

    a_list = await deliver(webhook, "[1, 2]")
    assert (a_list.status_code, a_list.json()) == (400, {"error": "body is not a JSON object"})

    unknown = await deliver(
        webhook, stripe_events.event("customer.created", {"id": "cus_1", "object": "customer"})
    )
    assert (unknown.status_code, unknown.json()) == (
        400,
        {"error": "unhandled Stripe event type 'customer.created'"},
    )

    stranger = uuid.uuid4()
    no_purchase = await deliver(webhook, stripe_events.checkout_completed(stranger, user.user_id))
    assert no_purchase.status_code == 400
    assert "matches no purchase" in no_purchase.json()["error"]

    wrong_amount = await deliver(
        webhook, stripe_events.checkout_completed(purchase, user.user_id, amount_total=1)
    )
    assert wrong_amount.status_code == 400
    assert "charged 1 usd" in wrong_amount.json()["error"]

    fractional = stripe_events.charge_refunded(purchase)
    fractional["data"]["object"]["amount_refunded"] = 12.5  # type: ignore[index]
    not_an_amount = await deliver(webhook, fractional)
    assert not_an_amount.status_code == 400
    assert "bigint" in not_an_amount.json()["error"]

    too_big = await deliver(webhook, json.dumps({"padding": "x" * 1_100_000}))
    assert too_big.status_code == 413
    assert (await webhook.get(WEBHOOK)).status_code == 405
    assert (await webhook.post("/elsewhere", content=b"{}")).status_code == 404

    assert events_recorded(admin) == 0
    assert credits(admin, user) == 100
    assert (await webhook.get("/healthz")).json() == {"ok": True}


async def test_a_refund_takes_the_credits_back_once(
    admin: Admin, webhook: httpx.AsyncClient
) -> None:
    user = admin.new_user()
    purchase = user.buy("starter")
    assert (
        await deliver(webhook, stripe_events.checkout_completed(purchase, user.user_id))
    ).status_code == 200
    refund = stripe_events.charge_refunded(purchase)

    answers = await asyncio.gather(deliver(webhook, refund), deliver(webhook, refund))

    assert sorted(a.json()["outcome"] for a in answers) == ["duplicate", "reconciled"]
    assert credits(admin, user) == 100
    assert user.select("select status, reversed_credits from purchases") == [
        {"status": "refunded", "reversed_credits": 60}
    ]


def test_the_receiver_will_not_start_without_its_signing_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_WEBHOOK_SECRET"}
    missing = subprocess.run(
        [sys.executable, "-m", "billing"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "STRIPE_WEBHOOK_SECRET: Field required (got missing)" in missing.stderr

    wrong = subprocess.run(
        [sys.executable, "-m", "billing"],
        cwd=ROOT,
        env=env | {"STRIPE_WEBHOOK_SECRET": "sk_live_pasted_by_mistake"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2
    assert (
        "STRIPE_WEBHOOK_SECRET: Value error, must be the endpoint's signing secret" in wrong.stderr
    )
    assert "sk_live_pasted_by_mistake" not in wrong.stderr


async def test_the_procfile_process_serves_deliveries_and_stops_on_sigterm(admin: Admin) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "billing",
        cwd=ROOT,
        env=os.environ
        | {
            "STRIPE_WEBHOOK_SECRET": stripe_events.SIGNING_SECRET,
            "UTTER_BILLING_DATABASE_URL": billing_url(admin.url),
            "UTTER_BILLING_PORT": str(port),
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                assert process.returncode is None, "python -m billing stopped at start"
                await asyncio.sleep(0.05)
            user = admin.new_user()
            purchase = user.buy()
            answer = await deliver(client, stripe_events.checkout_completed(purchase, user.user_id))
            assert answer.json() == {"outcome": "credited", "purchase_id": str(purchase)}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught (server.py),
    # so the exit status is the signal's, as for any process a supervisor stopped.
    assert process.returncode == -signal.SIGTERM
    assert b"Finished server process" in stderr
    assert credits(admin, user) == 160
