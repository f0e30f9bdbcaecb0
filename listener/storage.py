"""Where audio lives. Production: Supabase Storage through the `supabase` client with
the service key. The embedded default: files on disk that are also recorded in
`storage.objects`, so the same Storage policies govern them."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from listener.database import Database


class ObjectStore(Protocol):
    async def get(self, bucket: str, key: str) -> bytes: ...

    async def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str, owner: str
    ) -> None: ...

    async def delete(self, bucket: str, key: str) -> None:
        """Idempotent: deleting what is not there succeeds."""
        ...


class ObjectMissing(LookupError):
    pass


class LocalObjectStore:
    def __init__(self, root: Path, database: Database) -> None:
        self.root = root.resolve()
        self.database = database

    def path(self, bucket: str, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if (
            not parts
            or key.startswith("/")
            or ".." in parts
            or "/" in bucket
            or bucket in ("", "..", ".")
        ):
            raise ValueError(f"object key {key!r} leaves bucket {bucket!r}")
        return self.root / bucket / key

    async def get(self, bucket: str, key: str) -> bytes:
        path = self.path(bucket, key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ObjectMissing(f"no object at {bucket}/{key}") from None

    async def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str, owner: str
    ) -> None:
        path = self.path(bucket, key)
        await asyncio.to_thread(_write_atomically, path, data)
        await self.database.fetch(
            "record_object",
            bucket=bucket,
            object_key=key,
            size_bytes=len(data),
            mimetype=content_type,
            owner_id=uuid.UUID(owner),
        )

    async def delete(self, bucket: str, key: str) -> None:
        path = self.path(bucket, key)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        await self.database.fetch("forget_object", bucket=bucket, object_key=key)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


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
        storage = await self._storage()
        try:
            return bytes(await storage.from_(bucket).download(key))
        except Exception as exc:  # storage3 raises its own StorageException
            if "not found" in str(exc).lower():
                raise ObjectMissing(f"no object at {bucket}/{key}") from exc
            raise

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
