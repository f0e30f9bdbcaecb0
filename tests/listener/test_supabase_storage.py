"""The production object store (Supabase Storage through the official `supabase`
client with the service key), against a named fake of the Storage HTTP API."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest
from storage3.exceptions import StorageApiError

from gpu.engine import VoiceReference
from gpu.voice_prompts import ReferenceUnavailable, fetch_reference
from listener.storage import ObjectMissing, SupabaseObjectStore
from relay.tokens import mint
from supabase import acreate_client
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


async def test_the_storage_apis_refusals_reach_the_caller() -> None:
    with fake_supabase_storage() as (url, storage):
        store = SupabaseObjectStore(url, SERVICE_KEY)
        with pytest.raises(StorageApiError, match=re.escape("Invalid key: u1/caf\u00e9.wav")):
            await store.put(
                "generations", "u1/caf\u00e9.wav", b"RIFF", content_type="audio/wav", owner="u1"
            )
        with pytest.raises(StorageApiError, match="Bucket not found") as missing_bucket:
            await store.get("no-such-bucket", "u1/g1.wav")
        assert not isinstance(missing_bucket.value, ObjectMissing)
        assert storage.objects == {}


async def test_an_upload_without_upsert_onto_an_object_is_refused() -> None:
    """The adapter always upserts; what the Storage API does without it."""
    with fake_supabase_storage() as (url, _):
        client = await acreate_client(url, SERVICE_KEY)
        bucket = client.storage.from_("generations")
        await bucket.upload("u1/g1.wav", b"RIFF-one", {"content-type": "audio/wav"})
        with pytest.raises(StorageApiError, match="The resource already exists") as duplicate:
            await bucket.upload("u1/g1.wav", b"RIFF-two", {"content-type": "audio/wav"})
        assert (duplicate.value.status, duplicate.value.code) == ("409", "Duplicate")


async def test_a_signed_url_lets_the_speech_side_read_a_reference_without_a_key() -> None:
    wav = b"RIFF-a-prepared-reference"
    with fake_supabase_storage() as (url, storage):
        store = SupabaseObjectStore(url, SERVICE_KEY)
        await store.put(
            "references", "u1/v1/normalized.wav", wav, content_type="audio/wav", owner="u1"
        )
        signed = await store.signed_url("references", "u1/v1/normalized.wav", 60)
        assert signed.startswith(
            f"{url}/storage/v1/object/sign/references/u1/v1/normalized.wav?token="
        )
        reference = VoiceReference("v1", hashlib.sha256(wav).hexdigest(), "words", signed)
        fetched = await asyncio.to_thread(fetch_reference, reference)
        assert fetched == wav
        with pytest.raises(ObjectMissing):
            await store.signed_url("references", "u1/v2/normalized.wav", 60)
        # A URL whose token does not grant the object is refused: worth a fresh URL.
        forged = VoiceReference("v1", reference.sha256, "words", signed.split("?")[0] + "?token=x")
        with pytest.raises(ReferenceUnavailable) as refused:
            await asyncio.to_thread(fetch_reference, forged)
        assert refused.value.retryable
    (_, _, read_headers) = storage.requests[-1]
    assert "Authorization" not in read_headers  # the token is the only credential
