"""Stripe events as Stripe sends them to a webhook endpoint, signed with the official
client's own signer (stripe-python `_webhook.py`,
WebhookSignature.generate_signature_header: `t=<unix time>,v1=<HMAC-SHA256 of
"<t>.<body>">`). Shapes follow docs.stripe.com/api/events/object and the objects
they carry (checkout.session, charge, dispute)."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import stripe

SIGNING_SECRET = "whsec_utter_test_signing_secret"


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2025-10-29.clover",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": obj},
    }


def payment_intent_of(purchase_id: uuid.UUID) -> str:
    return "pi_" + purchase_id.hex


def checkout_completed(
    purchase_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    amount_total: int = 299,
    session_id: str | None = None,
    payment_status: str = "paid",
    event_id: str | None = None,
) -> dict[str, Any]:
    return event(
        "checkout.session.completed",
        {
            "id": session_id or "cs_test_" + purchase_id.hex,
            "object": "checkout.session",
            "mode": "payment",
            "status": "complete",
            "payment_status": payment_status,
            "amount_total": amount_total,
            "currency": "usd",
            "client_reference_id": str(purchase_id),
            "metadata": {"purchase_id": str(purchase_id), "user_id": str(user_id)},
            "payment_intent": payment_intent_of(purchase_id),
        },
        event_id,
    )


def charge_refunded(
    purchase_id: uuid.UUID, *, amount: int = 299, refunded: int = 299
) -> dict[str, Any]:
    return event(
        "charge.refunded",
        {
            "id": "ch_" + purchase_id.hex,
            "object": "charge",
            "amount": amount,
            "amount_refunded": refunded,
            "refunded": refunded == amount,
            "currency": "usd",
            "payment_intent": payment_intent_of(purchase_id),
        },
    )


def body_and_signature(
    payload: dict[str, Any] | str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> tuple[bytes, str]:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return body.encode(), header
