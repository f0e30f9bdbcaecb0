"""The production object store (Supabase Storage through the official `supabase`
client with the service key), against a named fake of the Storage HTTP API."""

from __future__ import annotations

import pytest

from listener.storage import ObjectMissing, SupabaseObjectStore
from relay.tokens import mint
from tests.listener.fake_supabase_storage import fake_supabase_storage

SERVICE_KEY = mint(
    "a-test-secret-with-at-least-32-characters", {"role": "service_role", "iss": "supabase"}
)


async def test_put_get_and_delete_go_through_the_storage_api() -> None:
    with fake_supabase_storage() as (url, storage):
        store = SupabaseObjectStore(url, SERVICE_KEY)
        await store.put(
            "generations", "u1/g1.wav", b"RIFF-one", content_type="audio/wav", owner="u1"
        )
        await store.put(
            "generations", "u1/g1.wav", b"RIFF-two", content_type="audio/wav", owner="u1"
        )
        assert storage.objects == {("generations", "u1/g1.wav"): b"RIFF-two"}  # a retry overwrites
        assert storage.content_types[("generations", "u1/g1.wav")] == "audio/wav"
        assert await store.get("generations", "u1/g1.wav") == b"RIFF-two"
        await store.delete("generations", "u1/g1.wav")
        await store.delete("generations", "u1/g1.wav")  # idempotent
        assert storage.objects == {}
        with pytest.raises(ObjectMissing):
            await store.get("references", "u1/v1/normalized.wav")
    method, path, headers = storage.requests[0]
    assert (method, path) == ("POST", "/storage/v1/object/generations/u1/g1.wav")
    assert headers.get("Authorization") == f"Bearer {SERVICE_KEY}"
