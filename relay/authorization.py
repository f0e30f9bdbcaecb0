"""May this caller read this private topic? Decided by the RLS policies on
`realtime.messages`, probed the way Supabase Realtime's `Realtime.Tenants.Authorization`
does: in a transaction that is always rolled back, insert a broadcast message for the
topic with the relay's own rights, take on the caller's role, claims and topic, and
see whether RLS lets the caller select that message back."""

from __future__ import annotations

import json
import uuid

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from relay.logs import log_event
from relay.tokens import Identity

_INSERT_PROBE = """
insert into realtime.messages (id, topic, extension) values (%s, %s, 'broadcast')
"""
_ACT_AS_CALLER = """
select
  set_config('statement_timeout', '5s', true),
  set_config('role', %(role)s, true),
  set_config('realtime.topic', %(topic)s, true),
  set_config('request.jwt.claims', %(claims)s, true),
  set_config('request.jwt.claim.sub', %(sub)s, true),
  set_config('request.jwt.claim.role', %(role)s, true),
  set_config('request.headers', '{}', true)
"""
_READ_PROBE = "select id from realtime.messages where id = %s"


class DatabaseUnavailable(RuntimeError):
    pass


class ReadAuthorizer:
    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]]):
        self._pool = pool

    async def may_read(self, topic: str, identity: Identity) -> bool:
        probe_id = uuid.uuid4()
        caller = {
            "role": identity.role,
            "topic": topic,
            "claims": json.dumps(dict(identity.claims)),
            "sub": identity.subject or "",
        }
        try:
            async with self._pool.connection() as conn, conn.transaction(force_rollback=True):
                await conn.execute(_INSERT_PROBE, (probe_id, topic))
                await conn.execute(_ACT_AS_CALLER, caller)
                cursor = await conn.execute(_READ_PROBE, (probe_id,))
                return await cursor.fetchone() is not None
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc
        except psycopg.Error as exc:
            # A role that does not exist, a policy that raises: Supabase reports these as
            # RlsPolicyError and refuses the join.
            log_event("rls_policy_error", topic=topic, role=identity.role, error=str(exc).strip())
            return False
