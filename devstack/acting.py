"""Acting as a signed-in user exactly as PostgREST does for a supabase-js request: one
transaction, role `authenticated`, the JWT's claims in `request.jwt.claims`. Used by
the demo, the benchmarks and the tests wherever they stand in for the browser."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row


def act_as(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> None:
    """Within the connection's current transaction."""
    claims = json.dumps({"sub": str(user_id), "role": "authenticated", "aud": "authenticated"})
    conn.execute(
        "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
        (claims,),
    )


def user_request(
    url: str, user_id: uuid.UUID, sql: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn, conn.transaction():
        act_as(conn, user_id)
        cursor = conn.execute(sql.encode(), params)
        return cursor.fetchall() if cursor.description else []
