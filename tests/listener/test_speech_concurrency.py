"""How many speech jobs a listener keeps at its engine: from the engine unless set."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu.modal_engine import ModalEngine
from gpu.tone_engine import ToneEngine
from listener.app import build_listener
from listener.settings import ConfigurationError, ListenerSettings
from tests.gpu.fake_modal import FakeModal


def settings(tmp_path: Path, **chosen: object) -> ListenerSettings:
    return ListenerSettings(
        UTTER_LISTENER_DATABASE_URL="postgresql://utter_worker@localhost:1/unused",
        engine="tone",
        transcriber="none",
        storage_dir=tmp_path,
        **chosen,
    )


def test_without_an_engine_the_split_is_the_old_two_generations_and_one_preview(
    tmp_path: Path,
) -> None:
    plain = settings(tmp_path)
    assert (plain.concurrency("generate"), plain.concurrency("design_preview")) == (2, 1)


def test_speech_in_flight_is_split_three_to_one_and_explicit_limits_win(
    tmp_path: Path,
) -> None:
    wide = settings(tmp_path, speech_in_flight=16)
    assert (wide.concurrency("generate"), wide.concurrency("design_preview")) == (12, 4)
    narrow = settings(tmp_path, speech_in_flight=1)
    assert (narrow.concurrency("generate"), narrow.concurrency("design_preview")) == (1, 1)
    chosen = settings(tmp_path, speech_in_flight=16, concurrency_design_preview=1)
    assert (chosen.concurrency("generate"), chosen.concurrency("design_preview")) == (12, 1)


def test_the_listener_keeps_as_many_speech_jobs_in_flight_as_its_engine_takes(
    tmp_path: Path,
) -> None:
    remote_storage = {
        "storage": "supabase",
        "supabase_url": "https://project.supabase.co",
        "supabase_service_role_key": "a-service-key",
    }
    modal = build_listener(
        settings(tmp_path, **remote_storage), engine=ModalEngine("utter-tts", sdk=FakeModal())
    )
    assert modal.settings.speech_in_flight == ModalEngine.requests_in_flight == 16
    assert modal.settings.concurrency("generate") == 12
    local = build_listener(settings(tmp_path), engine=ToneEngine())
    assert local.settings.speech_in_flight == 3
    chosen = build_listener(settings(tmp_path, speech_in_flight=5), engine=ToneEngine())
    assert chosen.settings.speech_in_flight == 5


def test_the_modal_engine_is_refused_with_local_storage(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="the Modal engine cannot use UTTER_STORAGE=local"):
        build_listener(settings(tmp_path), engine=ModalEngine("utter-tts", sdk=FakeModal()))
