"""Builds the webhook receiver from settings: its database access and the ASGI app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from billing.settings import BillingSettings
from billing.webhook import WebhookApp
from listener.database import Database, jsonb, load_queries

QUERIES = load_queries(Path(__file__).with_name("queries.sql"))


def build_app(settings: BillingSettings) -> WebhookApp:
    database = Database(
        settings.database_url,
        pool_size=4,
        retry_seconds=settings.db_retry_seconds,
        queries=QUERIES,
    )

    async def apply_event(event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await database.value("apply_stripe_event", event=jsonb(event))
        return result

    async def check_health() -> bool:
        try:
            async with database.pool.connection(timeout=2) as conn:
                await conn.execute(b"select")
        except (psycopg.Error, PoolTimeout):
            return False
        return True

    return WebhookApp(
        signing_secret=settings.stripe_webhook_secret.get_secret_value(),
        apply_event=apply_event,
        check_health=check_health,
        tolerance_seconds=settings.signature_tolerance_seconds,
        max_body_bytes=settings.max_body_bytes,
        on_startup=database.open,
        on_shutdown=database.close,
    )
