"""FakeStripeApi: a stand-in for the one Stripe endpoint the listener calls,
POST /v1/checkout/sessions, served on 127.0.0.1 so the official `stripe` client talks
to it over HTTP (StripeClient(base_addresses={"api": fake.url})).

It mirrors what our code relies on, behaviours and refusals alike, each with its
source:
- Requests are form-encoded with bracketed nested keys (`line_items[0][price_data]
  [currency]=usd`): stripe-python 16.1 `_encode.py` (`_api_encode`) and
  `_api_requestor.py` (Content-Type application/x-www-form-urlencoded for POST).
- The secret key arrives as `Authorization: Bearer <key>`; a missing or unknown key is
  answered 401 with an `invalid_request_error`: stripe-python `_api_requestor.py`
  (`request_headers`), docs.stripe.com/api/authentication and docs.stripe.com/api/errors
  ("401 Unauthorized: No valid API key provided"); the client raises
  AuthenticationError for any 401 (`_api_requestor.py`, `specific_v1_api_error`).
- `Idempotency-Key`: a request repeated with the same key and the same parameters gets
  the first answer back (with header `Idempotent-Replayed: true`); the same key with
  other parameters is refused 400 with error type `idempotency_error`, which the
  client raises as IdempotencyError: docs.stripe.com/api/idempotent_requests and
  stripe-python `_api_requestor.py` (`specific_v1_api_error`). stripe-python sends a
  random key on every POST when none is given (`_api_requestor.py`).
- Required parameters: `mode`, `line_items` with `price_data` (currency, unit_amount,
  product_data[name]) and `quantity`, `success_url`: 400 `invalid_request_error`
  with `param`, as docs.stripe.com/api/checkout/sessions/create documents them.
- The answer is a Checkout Session object (`id` cs_test_..., `object`
  "checkout.session", `url`, `expires_at` 24 h ahead, `status` "open",
  `payment_status` "unpaid", `metadata`, `client_reference_id`, `amount_total`,
  `currency`): docs.stripe.com/api/checkout/sessions/object; stripe-python
  `checkout/_session.py` types the same fields.
- 5xx answers are `api_error`s, raised by the client as APIError
  (`_api_requestor.py`); tests script them with `fail_next`.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

VALID_KEY = "sk_test_utter_fake"


@dataclass
class RecordedRequest:
    path: str
    authorization: str | None
    idempotency_key: str | None
    params: dict[str, Any]
    status: int


@dataclass
class FakeStripeApi:
    api_key: str = VALID_KEY
    requests: list[RecordedRequest] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # idempotency key -> (params, status, body)
    _replies: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = field(default_factory=dict)
    _scripted: list[tuple[int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeStripeApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                status, reply, replayed = fake.handle(
                    self.path,
                    self.headers.get("Authorization"),
                    self.headers.get("Idempotency-Key"),
                    body,
                )
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Request-Id", "req_" + secrets.token_hex(7))
                if replayed:
                    self.send_header("Idempotent-Replayed", "true")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def fail_next(self, count: int, status: int = 500, error_type: str = "api_error") -> None:
        """The next `count` requests are answered `status` before anything else is
        looked at (an outage, not a refusal: nothing is stored under their key)."""
        with self._lock:
            self._scripted.extend([(status, error_type)] * count)

    def sessions_created(self) -> int:
        return len(self.sessions)

    # -- the endpoint --------------------------------------------------------------

    def handle(
        self, path: str, authorization: str | None, idempotency_key: str | None, body: str
    ) -> tuple[int, dict[str, Any], bool]:
        params = decode_form(body)
        with self._lock:
            status, reply, replayed = self._answer(path, authorization, idempotency_key, params)
            self.requests.append(
                RecordedRequest(path, authorization, idempotency_key, params, status)
            )
        return status, reply, replayed

    def _answer(
        self, path: str, authorization: str | None, key: str | None, params: dict[str, Any]
    ) -> tuple[int, dict[str, Any], bool]:
        if self._scripted:
            status, error_type = self._scripted.pop(0)
            return status, _error(error_type, "scripted failure"), False
        if authorization != f"Bearer {self.api_key}":
            return (
                401,
                _error("invalid_request_error", f"Invalid API Key provided: {authorization!r}"),
                False,
            )
        if path != "/v1/checkout/sessions":
            return (
                404,
                _error("invalid_request_error", f"Unrecognized request URL (POST: {path})"),
                False,
            )
        if key is not None and key in self._replies:
            first_params, status, reply = self._replies[key]
            if first_params != params:
                return (
                    400,
                    _error(
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with. Try using a key other than '{key}' if you "
                        "meant to execute a different request.",
                    ),
                    False,
                )
            return status, reply, True
        status, reply = self._create_session(params)
        if key is not None:
            self._replies[key] = (params, status, reply)
        return status, reply, False

    def _create_session(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        for name in ("mode", "success_url", "line_items"):
            if name not in params:
                return 400, _error(
                    "invalid_request_error", f"Missing required param: {name}.", name
                )
        if params["mode"] != "payment":
            return 400, _error("invalid_request_error", "Invalid mode", "mode")
        total = 0
        currency = None
        for index, item in sorted(params["line_items"].items()):
            price = item.get("price_data", {})
            where = f"line_items[{index}][price_data]"
            for name in ("currency", "unit_amount"):
                if name not in price:
                    return 400, _error(
                        "invalid_request_error",
                        f"Missing required param: {where}[{name}].",
                        f"{where}[{name}]",
                    )
            if "name" not in price.get("product_data", {}):
                return 400, _error(
                    "invalid_request_error",
                    f"Missing required param: {where}[product_data][name].",
                    f"{where}[product_data][name]",
                )
            if not re.fullmatch(r"\d+", price["unit_amount"]):
                return 400, _error(
                    "invalid_request_error", "Invalid integer", f"{where}[unit_amount]"
                )
            total += int(price["unit_amount"]) * int(item.get("quantity", "1"))
            currency = price["currency"]
        session_id = "cs_test_" + secrets.token_hex(24)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "expires_at": int(time.time()) + 24 * 3600,
            "amount_total": total,
            "currency": currency,
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}),
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "payment_intent": None,
        }
        self.sessions[session_id] = session
        return 200, session


def _error(error_type: str, message: str, param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if param is not None:
        error["param"] = param
    return {"error": error}


def decode_form(body: str) -> dict[str, Any]:
    """`a[b][0][c]=v` pairs back into nested dicts (list indexes stay string keys)."""
    decoded: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True):
        head, *rest = re.findall(r"[^\[\]]+", raw_key)
        node = decoded
        for part in [head, *rest][:-1]:
            node = node.setdefault(part, {})
        node[[head, *rest][-1]] = value
    return decoded
