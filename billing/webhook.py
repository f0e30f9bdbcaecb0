"""The webhook endpoint as a plain ASGI application: POST /stripe/webhook verifies
Stripe's signature over the raw body, then passes the event to one database function,
which decides everything (what to credit, what is a duplicate). GET /healthz answers
whether the database is reachable.

Answers: 200 applied (or a duplicate: nothing changed); 400 bad signature, malformed
body or an event the database refuses (unhandled type, no matching purchase); 404/405
other paths and methods; 413 body too large; 503 database unreachable (Stripe
redelivers non-2xx answers with backoff for up to three days)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import psycopg
import stripe

log = logging.getLogger("billing")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ApplyEvent = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
CheckHealth = Callable[[], Awaitable[bool]]

WEBHOOK_PATH = "/stripe/webhook"


class BodyTooLarge(Exception):
    pass


class WebhookApp:
    def __init__(
        self,
        *,
        signing_secret: str,
        apply_event: ApplyEvent,
        check_health: CheckHealth,
        tolerance_seconds: int,
        max_body_bytes: int,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.signing_secret = signing_secret
        self.apply_event = apply_event
        self.check_health = check_health
        self.tolerance_seconds = tolerance_seconds
        self.max_body_bytes = max_body_bytes
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            status, body = await self._handle(scope, receive)
            await _respond(send, status, body)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.on_startup is not None:
                        await self.on_startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.on_shutdown is not None:
                    await self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        path, method = scope["path"], scope["method"]
        if path == "/healthz":
            if method != "GET":
                return 405, {"error": "use GET"}
            healthy = await self.check_health()
            return (200 if healthy else 503), {"ok": healthy}
        if path != WEBHOOK_PATH:
            return 404, {"error": f"not found; Stripe delivers to POST {WEBHOOK_PATH}"}
        if method != "POST":
            return 405, {"error": "use POST"}
        try:
            body = await self._read_body(receive)
        except BodyTooLarge:
            return 413, {"error": f"body larger than {self.max_body_bytes} bytes"}
        return await self._deliver(body, _header(scope, b"stripe-signature"))

    async def _deliver(self, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            return 400, {"error": "body is not UTF-8"}
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, self.signing_secret, self.tolerance_seconds
            )
        except stripe.SignatureVerificationError as exc:
            log.warning("refused a delivery: %s", exc.user_message)
            return 400, {"error": f"invalid Stripe-Signature: {exc.user_message}"}
        try:
            event = json.loads(payload)
        except ValueError as exc:
            return 400, {"error": f"body is not JSON: {exc}"}
        if not isinstance(event, dict):
            return 400, {"error": "body is not a JSON object"}
        ids = {"event_id": event.get("id"), "event_type": event.get("type")}
        try:
            result = await self.apply_event(event)
        except psycopg.DataError as exc:  # SQLSTATE class 22: the database refused the event
            log.warning("refused an event: %s", exc.diag.message_primary, extra=ids)
            return 400, {"error": exc.diag.message_primary}
        except psycopg.OperationalError as exc:
            log.error("database unreachable: %s", exc, extra=ids)
            return 503, {"error": "database unreachable; deliver again later"}
        log.info("event %s", result.get("outcome"), extra=ids | result)
        return 200, result

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body, default=str).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
