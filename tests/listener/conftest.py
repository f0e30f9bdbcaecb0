"""Fixtures for the listener's tests: a database of its own per test, users who act
exactly as the browser does (PostgREST's role and claims, plain inserts), and a
listener running in-process on a scripted test engine."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from devstack.acting import user_request
from devstack.settings import worker_url
from gpu.engine import Engine
from gpu.transcription import Transcriber
from listener.app import build_listener
from listener.settings import ListenerSettings
from listener.worker import Listener
from tests.listener.scripted_engine import ScriptedEngine


class Browser:
    """One signed-in user, doing what supabase-js does: each call is one PostgREST
    request, i.e. one transaction as role `authenticated` with the user's claims."""

    def __init__(self, url: str, user_id: uuid.UUID) -> None:
        self.url = url
        self.user_id = user_id

    def _request(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return user_request(self.url, self.user_id, sql, params)

    def design_preview(
        self, text: str = "Hello from a designed voice.", instruct: str = "A calm female narrator"
    ) -> uuid.UUID:
        rows = self._request(
            "insert into design_previews (instruct, text, language) values (%(i)s, %(t)s, 'English') returning id",
            {"i": instruct, "t": text},
        )
        return uuid.UUID(str(rows[0]["id"]))

    def save_voice(self, preview_id: uuid.UUID, name: str = "Narrator") -> uuid.UUID:
        rows = self._request(
            "insert into voices (name, design_preview_id) values (%(n)s, %(p)s) returning id",
            {"n": name, "p": preview_id},
        )
        return uuid.UUID(str(rows[0]["id"]))

    def generate(self, voice_id: uuid.UUID, text: str = "Speak this, please.") -> uuid.UUID:
        rows = self._request(
            "insert into generations (voice_id, text, language) values (%(v)s, %(t)s, 'English') returning id",
            {"v": voice_id, "t": text},
        )
        return uuid.UUID(str(rows[0]["id"]))

    def buy(self, pack_id: str = "starter") -> uuid.UUID:
        rows = self._request(
            "insert into purchases (pack_id) values (%(p)s) returning id", {"p": pack_id}
        )
        return uuid.UUID(str(rows[0]["id"]))

    def cancel(self, task_id: uuid.UUID) -> int:
        rows = self._request(
            "update tasks set cancel_requested_at = now() where id = %(id)s returning id",
            {"id": task_id},
        )
        return len(rows)

    def select(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._request(sql, params)


class Admin:
    """The test's own superuser view, for setting up and for looking under the hood."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(
        self, sql: str, params: dict[str, Any] | tuple[Any, ...] | None = None
    ) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, row_factory=dict_row, autocommit=True) as conn:
            cursor = conn.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description else []

    def value(self, sql: str, params: dict[str, Any] | tuple[Any, ...] | None = None) -> Any:
        rows = self.rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def new_user(self) -> Browser:
        user_id = uuid.uuid4()
        self.rows("select tests.create_user(%s, %s)", (f"{user_id}@example.com", user_id))
        return Browser(self.url, user_id)

    def task_of(self, column: str, subject_id: uuid.UUID) -> dict[str, Any]:
        return self.rows(f"select * from tasks where {column} = %s", (subject_id,))[0]

    async def wait_until(self, sql: str, params: Any = None, within: float = 20.0) -> Any:
        """Polls a query until it returns a true first value (test-side only)."""
        deadline = time.monotonic() + within
        while True:
            found = self.value(sql, params)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for: {sql} {params}")
            await asyncio.sleep(0.05)


@pytest.fixture
def admin(fresh_database_url: str) -> Admin:
    admin = Admin(fresh_database_url)
    # These suites load the listener with up to ten jobs per user at once; the tier caps
    # and request limits that would refuse them are the database's, tested by pgTAP (02320).
    admin.rows("select tests.allow_concurrent_jobs(10), tests.allow_requests(1000)")
    return admin


@pytest.fixture
def listener_settings(fresh_database_url: str, tmp_path: Path) -> ListenerSettings:
    return ListenerSettings(
        UTTER_LISTENER_DATABASE_URL=worker_url(fresh_database_url),
        engine="tone",
        # No recogniser unless a test brings one: the machine's environment decides nothing.
        transcriber="none",
        storage_dir=tmp_path / "storage",
        visibility_timeout_seconds=6,
        poll_interval_seconds=1.0,
        backoff_base_seconds=0.05,
        backoff_max_seconds=0.2,
        shutdown_grace_seconds=2.0,
        progress_interval_seconds=0.2,
        db_retry_seconds=30.0,
    )


RunListener = Callable[..., Any]


@pytest.fixture
def run_listener(listener_settings: ListenerSettings) -> RunListener:
    @asynccontextmanager
    async def running(
        engine: Engine | None = None, transcriber: Transcriber | None = None, **overrides: Any
    ) -> AsyncIterator[Listener]:
        settings = listener_settings.model_copy(update=overrides)
        listener = build_listener(
            settings, engine=engine or ScriptedEngine(), transcriber=transcriber
        )
        task = asyncio.create_task(listener.run())
        try:
            await _until(lambda: listener.metrics.listening or task.done(), 10)
            yield listener
        finally:
            listener.stop()
            await asyncio.wait_for(task, 30)

    return running


async def _until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("listener did not start listening")
        await asyncio.sleep(0.02)


async def until(condition: Callable[[], bool], within: float = 5.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def ready_voice(admin: Admin, user: Browser) -> uuid.UUID:
    """A voice as a user gets one without uploading: design a preview (a listener
    must be running), then save it."""
    preview = user.design_preview()
    await admin.wait_until(
        "select status = 'completed' from design_previews where id = %s", (preview,)
    )
    return user.save_voice(preview)
