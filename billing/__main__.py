"""`python -m billing`: Stripe's webhook receiver, served by uvicorn until SIGTERM.

Settings come from the environment: STRIPE_WEBHOOK_SECRET (required) and
UTTER_BILLING_* (see docs/billing.md)."""

from __future__ import annotations

import sys

import uvicorn

from billing.app import build_app
from billing.settings import ConfigurationError, load
from listener import logs


def main() -> int:
    logs.configure("INFO")
    try:
        settings = load()
    except ConfigurationError as exc:
        print(exc, file=sys.stderr)
        return 2
    config = uvicorn.Config(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,  # our JSON logs, configured above
        proxy_headers=False,
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
