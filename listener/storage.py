"""Where audio lives, always behind a Storage API: objects are written and removed
only the way Supabase's Storage API writes and removes them, row and file together.

Production: Supabase Storage through the `supabase` client with the service key.
The local default: the same API's behaviour over files on disk, with the rows in
`storage.objects` written by the Storage API's own login (`supabase_storage_admin`)
in transactions scoped as the Storage API scopes them; so the delete guard Supabase
puts on `storage.objects` (supabase/storage
migrations/tenant/0055-prevent-direct-deletes.sql) holds here as there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from listener.database import QUERIES


class ObjectStore(Protocol):
    async def get(self, bucket: str, key: str) -> bytes: ...

    async def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str, owner: str
    ) -> None:
        """Upserts. `owner` is the user the object is for; a service-key request
        records no owner (the Storage API takes it from a user's JWT), so neither
        adapter stores it."""
        ...

    async def delete(self, bucket: str, key: str) -> None:
        """Idempotent: deleting what is not there succeeds."""
        ...

    async def signed_url(self, bucket: str, key: str, expires_in: int) -> str:
        """A URL that reads the object for `expires_in` seconds without a key (what the
        speech side fetches a voice's reference from); ObjectMissing when there is no
        such object."""
        ...

    async def close(self) -> None:
        """Lets go of connections; the listener calls it once, when it stops."""
        ...


class ObjectMissing(LookupError):
    pass


class InvalidKey(ValueError):
    pass


# supabase/storage src/storage/limits.ts: isValidKey (S3-safe characters only).
_VALID_KEY = re.compile(r"[A-Za-z0-9_/!.*'() &$=@;:+,?-]+")


def check_key(bucket: str, key: str) -> None:
    """Our refusal of a key that would leave its bucket on disk, then the Storage
    API's refusal of characters it does not accept (`Invalid key: <key>`)."""
    parts = PurePosixPath(key).parts
    if (
        not parts
        or key.startswith("/")
        or ".." in parts
        or "/" in bucket
        or bucket in ("", "..", ".")
    ):
        raise InvalidKey(f"object key {key!r} leaves bucket {bucket!r}")
    if not _VALID_KEY.fullmatch(key) or not _VALID_KEY.fullmatch(bucket):
        raise InvalidKey(f"Invalid key: {bucket}/{key}")


# Uploads wait here until their row commits. '#' is refused in bucket names and keys
# (check_key), so no object can ever live under it.
STAGING_DIR = "#uploads"
# An upload is staged for as long as one row write takes; anything this old was left
# by a process that died mid-upload.
STAGED_MAX_AGE_SECONDS = 15 * 60


class LocalObjectStore:
    """Files under `root/<bucket>/<key>`; rows through `storage_database_url`, the
    Storage API's own login (devstack.settings.storage_admin_url)."""

    def __init__(self, root: Path, storage_database_url: str, pool_size: int = 4) -> None:
        self.root = root.resolve()
        self.storage_database_url = storage_database_url
        self.pool_size = pool_size
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    async def _connections(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """The Storage API keeps its database connections in a pool (a knex pool per
        tenant, supabase/storage src/internal/database/connection.ts) rather than
        logging in per request; so does this, opened at the first request. Each
        checkout is checked (an empty query) so that a connection a database restart
        broke is replaced, not handed to a request, as a fresh login never was."""
        if self._pool is None:
            self._pool = AsyncConnectionPool(
                self.storage_database_url,
                min_size=1,
                max_size=self.pool_size,
                open=False,
                timeout=10,
                kwargs={"autocommit": True, "connect_timeout": 10},
                check=AsyncConnectionPool.check_connection,
            )
            await self._pool.open()
            await asyncio.to_thread(self.sweep_staged)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def path(self, bucket: str, key: str) -> Path:
        check_key(bucket, key)
        return self.root / bucket / key

    @asynccontextmanager
    async def _request(self) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        """One Storage API request: one transaction, scoped to the service role
        (supabase/storage src/internal/database/postgres/scope.ts)."""
        pool = await self._connections()
        async with (
            pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            await cursor.execute(QUERIES["storage_api_scope"].encode())
            yield cursor

    async def get(self, bucket: str, key: str) -> bytes:
        path = self.path(bucket, key)
        # The Storage API looks the row up first: no row, no object (NoSuchKey).
        async with self._request() as cursor:
            await cursor.execute(
                QUERIES["storage_api_find_object"].encode(), {"bucket": bucket, "object_key": key}
            )
            found = await cursor.fetchone()
        if found is None:
            raise ObjectMissing(f"no object at {bucket}/{key}")
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ObjectMissing(f"no object at {bucket}/{key} (its file is gone)") from None

    async def signed_url(self, bucket: str, key: str, expires_in: int) -> str:
        """A file:// URL of the object: the stand-in has no HTTP server, so its objects
        are readable only on this machine (by the in-process engines), and no token
        is needed to read a local file. Like the Storage API, no row, no URL."""
        path = self.path(bucket, key)
        async with self._request() as cursor:
            await cursor.execute(
                QUERIES["storage_api_find_object"].encode(), {"bucket": bucket, "object_key": key}
            )
            found = await cursor.fetchone()
        if found is None or not path.is_file():
            raise ObjectMissing(f"no object at {bucket}/{key}")
        return path.as_uri()

    async def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str, owner: str
    ) -> None:
        path = self.path(bucket, key)
        # The Storage API is a server of its own: a listener that dies mid-request does
        # not stop its upload half-way. Here the listener's process is that server, so
        # the write is ordered so that dying at any point leaves nothing the database
        # does not know of: the bytes wait outside every bucket, the row commits, and
        # only then do the bytes move into the bucket. Dying before the commit leaves
        # a staged file (swept later, never an object); dying after it leaves a row
        # whose file is missing, which the database's cleanup removes like any object
        # of an ended task, and which a retried attempt overwrites.
        staged = await asyncio.to_thread(self._stage, data)
        try:
            async with self._request() as cursor:
                await cursor.execute(
                    QUERIES["storage_api_upsert_object"].encode(),
                    {
                        "bucket": bucket,
                        "object_key": key,
                        "size_bytes": len(data),
                        "mimetype": content_type,
                        "version": str(uuid.uuid4()),
                    },
                )
            await asyncio.to_thread(_move_into_place, staged, path)
        finally:
            await asyncio.to_thread(staged.unlink, missing_ok=True)

    def _stage(self, data: bytes) -> Path:
        staging = self.root / STAGING_DIR
        staging.mkdir(parents=True, exist_ok=True)
        staged = staging / uuid.uuid4().hex
        staged.write_bytes(data)
        return staged

    def sweep_staged(self, older_than_seconds: float = STAGED_MAX_AGE_SECONDS) -> int:
        """Removes uploads that a process died before committing, once they are older
        than any upload in progress can be. Returns how many were removed."""
        staging = self.root / STAGING_DIR
        cutoff = time.time() - older_than_seconds
        removed = 0
        for staged in staging.glob("*") if staging.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                if staged.stat().st_mtime < cutoff:
                    staged.unlink()
                    removed += 1
        return removed

    async def delete(self, bucket: str, key: str) -> None:
        path = self.path(bucket, key)
        # As the Storage API's deleteObjects (supabase/storage src/storage/object.ts):
        # the rows are deleted and the files removed inside one transaction, so a file
        # that cannot be removed keeps its row. A row whose file never arrived (a put
        # that stopped after its commit) is deleted all the same.
        async with self._request() as cursor:
            await cursor.execute(
                QUERIES["storage_api_delete_objects"].encode(),
                {"bucket": bucket, "object_keys": [key]},
            )
            await asyncio.to_thread(path.unlink, missing_ok=True)


def _move_into_place(staged: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, path)  # atomic: readers see the old bytes or the new, never part


class SupabaseObjectStore:
    """Supabase Storage with the service role key (bypasses Storage RLS, as the
    server side should). Uploads upsert, so a retried job overwrites its own output."""

    def __init__(self, url: str, service_role_key: str) -> None:
        self.url = url
        self.key = service_role_key
        self._client: Any = None

    async def _storage(self) -> Any:
        if self._client is None:
            from supabase import acreate_client

            self._client = await acreate_client(self.url, self.key)
        return self._client.storage

    async def get(self, bucket: str, key: str) -> bytes:
        from storage3.exceptions import StorageApiError

        storage = await self._storage()
        try:
            return bytes(await storage.from_(bucket).download(key))
        except StorageApiError as exc:
            # Only a missing object (NoSuchKey, error "not_found"); a missing bucket
            # ("Bucket not found") is a deployment error, not a missing input.
            if exc.code == "not_found":
                raise ObjectMissing(f"no object at {bucket}/{key}") from exc
            raise

    async def signed_url(self, bucket: str, key: str, expires_in: int) -> str:
        from storage3.exceptions import StorageApiError

        storage = await self._storage()
        try:
            signed = await storage.from_(bucket).create_signed_url(key, expires_in)
        except StorageApiError as exc:
            if exc.code == "not_found":
                raise ObjectMissing(f"no object at {bucket}/{key}") from exc
            raise
        return str(signed["signedURL"])

    async def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str, owner: str
    ) -> None:
        storage = await self._storage()
        await storage.from_(bucket).upload(
            key, data, {"content-type": content_type, "upsert": "true"}
        )

    async def delete(self, bucket: str, key: str) -> None:
        storage = await self._storage()
        await storage.from_(bucket).remove([key])

    async def close(self) -> None:
        """The client's HTTP connections close with the process."""
