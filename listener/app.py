"""Builds a listener from settings: database, storage, engine, reference handling."""

from __future__ import annotations

import logging
import os
import uuid

from gpu.engine import Engine, requests_in_flight
from gpu.transcription import Transcriber, Transcript
from listener.checkout import build_checkout
from listener.database import Database
from listener.jobs import Handlers, ReferenceNormaliser
from listener.preflight import refuse_local_storage_for_a_remote_engine
from listener.settings import QUEUES, ListenerSettings
from listener.storage import LocalObjectStore, ObjectStore, SupabaseObjectStore
from listener.worker import Listener

log = logging.getLogger("listener")


def build_engine(name: str) -> Engine:
    if name == "tone":
        from gpu.tone_engine import ToneEngine

        return ToneEngine(delay_seconds=float(os.environ.get("UTTER_TONE_DELAY_SECONDS", "0")))
    from gpu.select import select_engine

    return select_engine(name)


def reference_normaliser() -> ReferenceNormaliser:
    from gpu.reference import normalise_for_listener

    return normalise_for_listener


def build_transcriber(name: str) -> Transcriber | None:
    from gpu.select import select_transcriber

    return select_transcriber(name)


class DatabaseTranscripts:
    """The listener's TranscriptRecorder: the worker functions, by name."""

    def __init__(self, database: Database, worker_id: str) -> None:
        self.database = database
        self.worker_id = worker_id

    async def for_voice(self, task_id: str, transcript: Transcript) -> str:
        return str(
            await self.database.value(
                "record_transcript",
                task_id=uuid.UUID(task_id),
                worker_id=self.worker_id,
                transcript=transcript.text,
                language=transcript.language,
            )
        )

    async def for_transcription(self, task_id: str, transcript: Transcript, seconds: float) -> str:
        return str(
            await self.database.value(
                "record_transcription",
                task_id=uuid.UUID(task_id),
                worker_id=self.worker_id,
                transcript=transcript.text,
                language=transcript.language,
                duration_seconds=seconds,
            )
        )


class DatabaseReferences:
    """The listener's ReferenceRecorder: worker.record_reference, by name."""

    def __init__(self, database: Database, worker_id: str) -> None:
        self.database = database
        self.worker_id = worker_id

    async def __call__(
        self,
        task_id: str,
        sha256: str,
        *,
        cut: tuple[float, float] | None = None,
        transcript: Transcript | None = None,
    ) -> str:
        return str(
            await self.database.value(
                "record_reference",
                task_id=uuid.UUID(task_id),
                worker_id=self.worker_id,
                sha256=sha256,
                cut_start_seconds=None if cut is None else cut[0],
                cut_end_seconds=None if cut is None else cut[1],
                transcript=None if transcript is None else transcript.text,
                language=None if transcript is None else transcript.language,
            )
        )


def build_listener(
    settings: ListenerSettings,
    *,
    engine: Engine | None = None,
    normalise_reference: ReferenceNormaliser | None = None,
    transcriber: Transcriber | None = None,
) -> Listener:
    stripe_checkout = build_checkout(settings)
    engine = engine or build_engine(settings.engine)
    refuse_local_storage_for_a_remote_engine(engine.name, settings)
    if settings.speech_in_flight is None:
        settings = settings.model_copy(update={"speech_in_flight": requests_in_flight(engine)})
    pool_size = sum(settings.concurrency(q) for q in QUEUES) + 2
    if stripe_checkout is not None:
        pool_size += settings.concurrency_checkout
    database = Database(
        settings.database_url, pool_size=pool_size, retry_seconds=settings.db_retry_seconds
    )
    store: ObjectStore
    if settings.storage == "supabase":
        store = SupabaseObjectStore(settings.supabase_url, settings.supabase_service_role_key)
    else:
        store = LocalObjectStore(settings.storage_dir, settings.local_storage_database_url())
    log.info(
        "engine %s (%d speech jobs in flight), storage %s",
        engine.name,
        settings.speech_in_flight,
        settings.storage,
    )
    transcriber = transcriber or build_transcriber(settings.transcriber)
    handlers = Handlers(
        engine,
        store,
        normalise_reference or reference_normaliser(),
        transcriber,
        DatabaseTranscripts(database, settings.worker_id),
        DatabaseReferences(database, settings.worker_id),
    )
    return Listener(settings, database, handlers, store, stripe_checkout)
