"""The same work on both storage layers: a design preview, a generation from its voice,
then the generation's deletion and its storage cleanup, which completes only once the
object's row and bytes are gone, removed the way the Storage API removes them (direct
deletes from storage.objects are refused, as on Supabase). Also the listener's refusal
to start with local storage against a Supabase database."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
import pytest

from devstack.settings import storage_admin_url, worker_url
from listener import preflight
from listener.__main__ import main
from listener.settings import ConfigurationError, ListenerSettings
from listener.storage import STAGING_DIR, InvalidKey, LocalObjectStore, check_key
from tests.listener.conftest import Admin, RunListener, ready_voice
from tests.listener.fake_supabase_storage import FakeStorage, fake_supabase_storage
from tests.listener.test_supabase_storage import SERVICE_KEY


@contextmanager
def storage_layer(
    kind: str, database_url: str
) -> Iterator[tuple[dict[str, Any], FakeStorage | None]]:
    if kind == "local":
        yield {"storage": "local"}, None
        return
    with fake_supabase_storage(storage_admin_url(database_url)) as (url, fake):
        yield (
            {
                "storage": "supabase",
                "supabase_url": url,
                "supabase_service_role_key": SERVICE_KEY,
            },
            fake,
        )


@pytest.mark.parametrize("kind", ["local", "supabase"])
async def test_a_deleted_generations_audio_is_removed_through_the_storage_api(
    kind: str,
    admin: Admin,
    run_listener: RunListener,
    listener_settings: ListenerSettings,
    fresh_database_url: str,
) -> None:
    user = admin.new_user()
    with storage_layer(kind, fresh_database_url) as (overrides, fake):
        async with run_listener(**overrides):
            voice_id = await ready_voice(admin, user)
            generation_id = user.generate(voice_id)
            key = await admin.wait_until(
                "select audio_object_key from generations where id = %s and status = 'completed'",
                (generation_id,),
            )
            stored = "select count(*)::int from storage.objects where bucket_id = 'generations' and name = %s"
            assert admin.value(stored, (key,)) == 1
            user.select("delete from generations where id = %(id)s", {"id": generation_id})
            await admin.wait_until("select count(*) = 0 from pgmq.q_storage_cleanup")
            assert admin.value("select count(*)::int from pgmq.a_storage_cleanup") == 1
        assert admin.value(stored, (key,)) == 0
        if fake is None:
            assert not (listener_settings.storage_dir / "generations" / key).exists()
            assert (listener_settings.storage_dir / "references").is_dir()
        else:
            assert ("generations", key) not in fake.objects
            assert any(bucket == "references" for bucket, _ in fake.objects)


def supabase_managed(database_url: str) -> None:
    """What only a database whose storage schema the Storage API built has."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create table storage.migrations (id integer primary key, name text)")


async def test_local_storage_is_refused_on_a_supabase_database(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    supabase_managed(fresh_database_url)
    listener_url = worker_url(fresh_database_url)
    with pytest.raises(ConfigurationError, match="UTTER_STORAGE=supabase"):
        await preflight.check(ListenerSettings(UTTER_LISTENER_DATABASE_URL=listener_url))
    # The same check passes with Supabase storage configured.
    await preflight.check(
        ListenerSettings(
            UTTER_LISTENER_DATABASE_URL=listener_url,
            storage="supabase",
            supabase_url="https://example.supabase.co",
            supabase_service_role_key="key",
        )
    )
    monkeypatch.setenv("UTTER_LISTENER_DATABASE_URL", listener_url)
    monkeypatch.setenv("UTTER_STORAGE", "local")
    assert await main([]) == 2
    refusal = capsys.readouterr().err
    assert "UTTER_STORAGE=local cannot be used with a Supabase database" in refusal
    assert "UTTER_SUPABASE_URL" in refusal and "UTTER_SUPABASE_SERVICE_ROLE_KEY" in refusal


async def test_a_transaction_pooler_url_is_refused_before_connecting() -> None:
    url = f"postgresql://utter_worker.ref:{uuid.uuid4().hex}@aws-0-eu-west-1.pooler.supabase.com:6543/postgres"
    with pytest.raises(ConfigurationError, match="session pooler") as refused:
        await preflight.check(ListenerSettings(UTTER_LISTENER_DATABASE_URL=url))
    assert "port 6543" in str(refused.value) and "***" in str(refused.value)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def test_a_local_upload_whose_row_cannot_be_written_leaves_no_file(tmp_path: Path) -> None:
    """The outage between a listener's bytes and its row: the Storage API would not
    keep the upload, and neither does the local stand-in (nor anything staged)."""
    unreachable = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=1"
    store = LocalObjectStore(tmp_path, unreachable)
    store.pool_size = 1
    with pytest.raises(psycopg_pool.PoolTimeout):
        await store.put("generations", "u/g.wav", b"RIFF", content_type="audio/wav", owner="u")
    await store.close()
    assert files_under(tmp_path) == []


async def test_a_local_upload_refused_by_the_database_leaves_no_file(
    fresh_database_url: str, tmp_path: Path
) -> None:
    store = LocalObjectStore(tmp_path, storage_admin_url(fresh_database_url))
    try:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            await store.put(
                "no-such-bucket", "u/g.wav", b"RIFF", content_type="audio/wav", owner="u"
            )
        await store.put("generations", "u/g.wav", b"RIFF", content_type="audio/wav", owner="u")
    finally:
        await store.close()
    assert files_under(tmp_path) == ["generations/u/g.wav"]


def test_uploads_left_staged_by_a_dead_process_are_swept(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, storage_database_url="")
    staging = tmp_path / STAGING_DIR
    staging.mkdir()
    (staging / "old").write_bytes(b"RIFF")
    (staging / "in-progress").write_bytes(b"RIFF")
    an_hour_ago = time.time() - 3600
    os.utime(staging / "old", (an_hour_ago, an_hour_ago))
    assert store.sweep_staged() == 1
    assert [p.name for p in staging.iterdir()] == ["in-progress"]


def test_no_bucket_or_key_can_live_in_the_staging_area() -> None:
    with pytest.raises(InvalidKey):
        check_key(STAGING_DIR, "u/g.wav")
