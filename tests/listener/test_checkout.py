"""Checkout jobs: an insert into purchases becomes a Stripe Checkout Session whose URL
reaches the owner, created through the official `stripe` client against
FakeStripeApi (tests/billing/fake_stripe_api.py)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from pydantic import SecretStr

from listener.checkout import CheckoutJob
from listener.settings import ConfigurationError, load
from relay.server import serve
from relay.tokens import mint_user_token
from tests.billing.fake_stripe_api import VALID_KEY, FakeStripeApi
from tests.listener.conftest import Admin, RunListener
from tests.relay.support import SECRET, RawClient, relay_settings

SUCCESS_URL = "https://utter.example/credits?purchase={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://utter.example/credits"


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripeApi]:
    fake = FakeStripeApi().start()
    yield fake
    fake.stop()


def stripe_settings(api_base: str, key: str = VALID_KEY) -> dict[str, Any]:
    return {
        "stripe_secret_key": SecretStr(key),
        "stripe_api_base": api_base,
        "checkout_success_url": SUCCESS_URL,
        "checkout_cancel_url": CANCEL_URL,
    }


def purchase(admin: Admin, purchase_id: uuid.UUID) -> dict[str, Any]:
    return admin.rows("select * from purchases where id = %s", (purchase_id,))[0]


async def test_an_insert_leads_to_a_checkout_url_on_the_owners_topic(
    admin: Admin, run_listener: RunListener, fake_stripe: FakeStripeApi
) -> None:
    user = admin.new_user()
    async with run_listener(**stripe_settings(fake_stripe.url)):
        purchase_id = user.buy("studio")
        await admin.wait_until(
            "select status = 'open' from purchases where id = %s", (purchase_id,)
        )

    (request,) = fake_stripe.requests
    assert request.authorization == f"Bearer {VALID_KEY}"
    assert request.idempotency_key == str(purchase_id)
    assert request.params["metadata"] == {
        "purchase_id": str(purchase_id),
        "user_id": str(user.user_id),
    }
    assert request.params["payment_intent_data"]["metadata"] == request.params["metadata"]
    assert request.params["client_reference_id"] == str(purchase_id)
    assert request.params["line_items"]["0"]["price_data"]["unit_amount"] == "999"
    assert (request.params["success_url"], request.params["cancel_url"]) == (
        SUCCESS_URL,
        CANCEL_URL,
    )

    (session,) = fake_stripe.sessions.values()
    row = purchase(admin, purchase_id)
    assert (row["checkout_session_id"], row["checkout_url"]) == (session["id"], session["url"])
    assert int(row["checkout_expires_at"].timestamp()) == session["expires_at"]
    # What Realtime delivers to the owner's private channel: the URL, nothing internal.
    broadcast = admin.value(
        "select payload -> 'record' from realtime.messages where topic = %s "
        "and payload ->> 'table' = 'purchases' and payload -> 'record' ->> 'status' = 'open'",
        (f"user:{user.user_id}",),
    )
    assert broadcast["checkout_url"] == session["url"]
    assert not {"user_id", "msg_id", "attempts"} & broadcast.keys()
    assert admin.value("select count(*) from pgmq.q_checkout") == 0


async def test_the_owner_receives_the_checkout_url_over_realtime(
    admin: Admin, run_listener: RunListener, fake_stripe: FakeStripeApi
) -> None:
    """The browser's path: join the private channel user:<id> on the Realtime relay,
    insert the purchase, and wait for the update that carries the URL."""
    user = admin.new_user()
    async with (
        serve(relay_settings(admin.url)) as relay,
        run_listener(**stripe_settings(fake_stripe.url)),
    ):
        client = await RawClient.connect(relay)
        try:
            _, reply = await client.join(
                f"user:{user.user_id}", mint_user_token(SECRET, user.user_id)
            )
            assert reply["payload"]["status"] == "ok", reply
            purchase_id = user.buy()
            record: dict[str, Any] = {}
            while record.get("checkout_url") is None:
                frame = await client.receive()
                if (
                    frame["event"] == "broadcast"
                    and frame["payload"]["payload"]["table"] == "purchases"
                ):
                    record = frame["payload"]["payload"]["record"]
        finally:
            await client.close()

    assert record["id"] == str(purchase_id)
    assert record["status"] == "open"
    assert record["checkout_url"] == purchase(admin, purchase_id)["checkout_url"]


async def test_a_stripe_outage_is_retried_with_the_same_key_and_makes_one_session(
    admin: Admin, run_listener: RunListener, fake_stripe: FakeStripeApi
) -> None:
    user = admin.new_user()
    fake_stripe.fail_next(2, status=500)
    async with run_listener(**stripe_settings(fake_stripe.url)):
        purchase_id = user.buy()
        await admin.wait_until(
            "select status = 'open' from purchases where id = %s", (purchase_id,)
        )

    assert [r.status for r in fake_stripe.requests] == [500, 500, 200]
    assert {r.idempotency_key for r in fake_stripe.requests} == {str(purchase_id)}
    assert fake_stripe.sessions_created() == 1
    assert purchase(admin, purchase_id)["attempts"] == 3


async def test_a_session_created_before_a_crash_is_recorded_not_created_again(
    admin: Admin, run_listener: RunListener, fake_stripe: FakeStripeApi
) -> None:
    """An earlier attempt reached Stripe but died before writing the URL back: the
    retry sends the same request with the same key and Stripe replays its answer."""
    user = admin.new_user()
    purchase_id = user.buy()
    seen: list[dict[str, Any]] = []
    async with run_listener(**stripe_settings(fake_stripe.url)) as listener:
        await admin.wait_until(
            "select status = 'open' from purchases where id = %s", (purchase_id,)
        )
        first = purchase(admin, purchase_id)
        # The same job again, as a listener whose write-back was lost would run it.
        assert listener.checkout is not None
        again = await listener.checkout.stripe.create_session(
            CheckoutJob(str(purchase_id), str(user.user_id), 2, "Starter", 60, 299, "usd")
        )
        seen.append({"id": again.id, "url": again.url})

    assert seen == [{"id": first["checkout_session_id"], "url": first["checkout_url"]}]
    assert fake_stripe.sessions_created() == 1
    assert len(fake_stripe.requests) == 2


async def test_a_refused_key_fails_the_purchase_at_once(
    admin: Admin, run_listener: RunListener, fake_stripe: FakeStripeApi
) -> None:
    user = admin.new_user()
    async with run_listener(**stripe_settings(fake_stripe.url, key="sk_test_revoked")):
        purchase_id = user.buy()
        await admin.wait_until(
            "select status = 'failed' from purchases where id = %s", (purchase_id,)
        )

    assert len(fake_stripe.requests) == 1
    assert purchase(admin, purchase_id)["error"].startswith(
        "Stripe refused the checkout (401): Invalid API Key"
    )
    assert admin.value("select count(*) from pgmq.a_checkout") == 1


async def test_a_key_reused_with_other_parameters_is_refused_not_retried(
    admin: Admin, run_listener: RunListener, fake_stripe: FakeStripeApi
) -> None:
    user = admin.new_user()
    purchase_id = user.buy()
    client = stripe.StripeClient(VALID_KEY, base_addresses={"api": fake_stripe.url})
    client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "success_url": SUCCESS_URL,
            "line_items": [
                {
                    "quantity": 2,
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 1,
                        "product_data": {"name": "x"},
                    },
                }
            ],
        },
        options={"idempotency_key": str(purchase_id)},
    )
    async with run_listener(**stripe_settings(fake_stripe.url)):
        await admin.wait_until(
            "select status = 'failed' from purchases where id = %s", (purchase_id,)
        )

    assert (
        "Keys for idempotent requests can only be used with the same parameters"
        in purchase(admin, purchase_id)["error"]
    )
    assert fake_stripe.sessions_created() == 1


async def test_stripe_unreachable_gives_up_after_the_attempt_limit(
    admin: Admin, run_listener: RunListener
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    user = admin.new_user()
    async with run_listener(**stripe_settings(f"http://127.0.0.1:{closed_port}"), max_attempts=2):
        purchase_id = user.buy()
        await admin.wait_until(
            "select status = 'failed' from purchases where id = %s", (purchase_id,)
        )

    row = purchase(admin, purchase_id)
    assert row["attempts"] == 2
    assert row["error"].startswith("Stripe unreachable")
    assert row["error"].endswith("(gave up after 2 attempts)")


async def test_without_a_secret_key_purchases_wait_in_the_queue(
    admin: Admin, run_listener: RunListener
) -> None:
    user = admin.new_user()
    async with run_listener() as listener:
        assert listener.checkout is None
        purchase_id = user.buy()
        await admin.wait_until("select count(*) = 1 from pgmq.q_checkout")
    assert purchase(admin, purchase_id)["status"] == "pending"


def test_checkout_settings_are_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", VALID_KEY)
    monkeypatch.delenv("UTTER_CHECKOUT_SUCCESS_URL", raising=False)
    with pytest.raises(ConfigurationError, match="UTTER_CHECKOUT_SUCCESS_URL must be an http"):
        load()
    monkeypatch.setenv("STRIPE_SECRET_KEY", "pk_test_publishable")
    with pytest.raises(ConfigurationError, match="STRIPE_SECRET_KEY must be a secret"):
        load()
    monkeypatch.setenv("STRIPE_SECRET_KEY", VALID_KEY)
    monkeypatch.setenv("UTTER_CHECKOUT_SUCCESS_URL", SUCCESS_URL)
    monkeypatch.setenv("UTTER_CHECKOUT_CANCEL_URL", CANCEL_URL)
    monkeypatch.setenv("UTTER_STRIPE_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("UTTER_VISIBILITY_TIMEOUT_SECONDS", "60")
    with pytest.raises(ConfigurationError, match="UTTER_STRIPE_TIMEOUT_SECONDS must be shorter"):
        load()
    monkeypatch.setenv("UTTER_STRIPE_TIMEOUT_SECONDS", "20")
    assert load().stripe_secret_key.get_secret_value() == VALID_KEY
    assert VALID_KEY not in repr(load())
