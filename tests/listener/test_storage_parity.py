"""The same work on both storage layers: a design preview, a generation from its voice,
then the generation's deletion and its storage cleanup, which completes only once the
object's row and bytes are gone, removed the way the Storage API removes them (direct
deletes from storage.objects are refused, as on Supabase). Also the listener's refusal
to start with local storage against a Supabase database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from devstack.settings import storage_admin_url, worker_url
from listener import preflight
from listener.__main__ import main
from listener.settings import ConfigurationError, ListenerSettings
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
