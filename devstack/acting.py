"""Acting as a signed-in user exactly as PostgREST does for a supabase-js request: one
transaction, role `authenticated`, the JWT's claims in `request.jwt.claims`. Used by
the demo, the benchmarks and the tests wherever they stand in for the browser."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
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


def upload_as_user(
    url: str, storage_root: Path, user_id: uuid.UUID, bucket: str, key: str, data: bytes
) -> None:
    """The local stand-in for a Supabase Storage upload by a user: the caller is checked
    against the policies on storage.objects (the row is inserted as the caller), then the
    bytes are stored where the listener's local object store reads them."""
    path = storage_root / bucket / key
    with psycopg.connect(url) as conn, conn.transaction():
        act_as(conn, user_id)
        conn.execute(
            "insert into storage.objects (bucket_id, name, owner, owner_id, metadata) "
            "values (%s, %s, %s, %s, jsonb_build_object('size', %s::bigint, 'mimetype', 'audio/wav'))",
            (bucket, key, user_id, str(user_id), len(data)),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
