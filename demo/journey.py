"""One user's journey, made of the same inserts the browser makes (as PostgREST would
run them) and watched over Realtime through the relay, as the browser would watch it:
clone a voice from a recording, speak with it, design a voice."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from realtime.types import BroadcastPayload

from devstack.acting import upload_as_user, user_request
from relay.tokens import mint_user_token
from relay.watch import user_channel

DEMO_EMAIL = "demo@utter.local"
REFERENCE_TRANSCRIPT = (
    "Hello, and welcome to Utter. This short recording is the reference for a cloned voice. "
    "It was spoken by a speech synthesiser so that the demo needs no microphone, no network "
    "and no graphics card. A real reference would be your own voice, read clearly, for about "
    "half a minute."
)


@dataclass
class Step:
    name: str
    seconds: float
    wav: Path | None = None
    audio_seconds: float | None = None


@dataclass
class Journey:
    database_url: str
    relay_url: str
    jwt_secret: str
    storage_dir: Path
    short: bool = False
    steps: list[Step] = field(default_factory=list)
    _events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _started: float = field(default_factory=time.monotonic)

    # -- the user and their channel ----------------------------------------------

    def sign_up(self) -> uuid.UUID:
        """What GoTrue does on sign-up: an auth.users row (the profile follows)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute(
                "select id from auth.users where email = %s", (DEMO_EMAIL,)
            ).fetchone()
            if row:
                return uuid.UUID(str(row[0]))
            user_id = uuid.uuid4()
            conn.execute(
                "insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data) "
                "values (%s, 'authenticated', 'authenticated', %s, '{\"provider\": \"email\"}', '{}')",
                (user_id, DEMO_EMAIL),
            )
            return user_id

    async def subscribe(self, user_id: uuid.UUID) -> AsyncRealtimeClient:
        client = AsyncRealtimeClient(
            f"{self.relay_url}/realtime/v1",
            mint_user_token(self.jwt_secret, user_id, email=DEMO_EMAIL),
        )
        joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_state(state: RealtimeSubscribeStates, error: Exception | None) -> None:
            if joined.done():
                return
            if state == RealtimeSubscribeStates.SUBSCRIBED:
                joined.set_result(None)
            else:
                joined.set_exception(
                    RuntimeError(f"could not join user:{user_id}: {state.value} {error or ''}")
                )

        def on_message(message: BroadcastPayload) -> None:
            self._events.put_nowait(message["payload"])

        channel = user_channel(client, user_id)
        channel.on_broadcast("*", on_message)
        await channel.subscribe(on_state)
        await asyncio.wait_for(joined, 15)
        self.say(f"subscribed to user:{user_id} over Realtime ({self.relay_url})")
        return client

    def say(self, line: str) -> None:
        print(f"[{time.monotonic() - self._started:6.1f}s] {line}", flush=True)

    async def until(
        self, table: str, record_id: uuid.UUID, done: set[str], within: float = 600
    ) -> dict[str, Any]:
        """Shows every update as it arrives; returns the record once its status is in `done`."""
        async with asyncio.timeout(within):
            while True:
                event = await self._events.get()
                self.show(event)
                # A task's message carries its subject (docs/client-contract.md).
                for changed in (event, event.get("subject") or {}):
                    record = changed.get("record", {})
                    if changed.get("table") == table and record.get("id") == str(record_id):
                        if record.get("status") in done:
                            return dict(record)
                        if record.get("status") in {"failed", "cancelled"}:
                            raise RuntimeError(
                                f"{table} {record_id} {record['status']}: {record.get('error')}"
                            )

    def show(self, event: dict[str, Any]) -> None:
        record = event.get("record", {})
        table = event.get("table")
        if table == "tasks":
            filled = round(float(record.get("progress") or 0) * 20)
            bar = "#" * filled + "." * (20 - filled)
            error = f"  ({record['error']})" if record.get("error") else ""
            self.say(f"  task {record.get('type'):<14} {record.get('status'):<10} [{bar}]{error}")
            if event.get("subject"):
                self.show(event["subject"])
        elif table == "generation_segments":
            self.say(
                f"  segment {int(record.get('segment_index', 0)) + 1}/{record.get('segment_count')}"
                f" playable ({float(record.get('duration_seconds') or 0):.1f} s):"
                f" generations/{record.get('object_key')}"
            )
        elif table == "profiles":
            self.say(f"  credits: {record.get('credits')}")
        elif table == "credit_activity":
            self.say(
                f"  credit {record.get('reason')} {record.get('amount'):+d}"
                f" -> balance {record.get('balance_after')}"
            )
        elif (
            table in {"voices", "generations", "design_previews"}
            and event.get("operation") != "DELETE"
        ):
            self.say(f"  {table[:-1].replace('_', ' ')} {record.get('status')}")

    # -- the steps -------------------------------------------------------------------

    async def run(self) -> list[Step]:
        user_id = self.sign_up()
        credits = user_request(self.database_url, user_id, "select credits from profiles")[0][
            "credits"
        ]
        self.say(f"signed in as {DEMO_EMAIL} ({user_id}), {credits} credits")
        client = await self.subscribe(user_id)
        try:
            voice_id = await self.step("clone a voice from a recording", self.clone, user_id)
            await self.step("generate speech in the cloned voice", self.generate, user_id, voice_id)
            await self.step("design a voice from a description", self.design, user_id)
        finally:
            await client.close()
        return self.steps

    async def step(self, name: str, action: Any, *args: Any) -> Any:
        self.say(f"{name} ...")
        started = time.monotonic()
        result, wav = await action(*args)
        step = Step(name, time.monotonic() - started, wav)
        if wav is not None:
            with wave.open(str(wav)) as audio:
                step.audio_seconds = audio.getnframes() / audio.getframerate()
        self.steps.append(step)
        return result

    async def clone(self, user_id: uuid.UUID) -> tuple[uuid.UUID, Path]:
        recording = await asyncio.to_thread(self.record_reference)
        voice_id = uuid.uuid4()  # chosen first: the upload's key names it
        key = f"{user_id}/{voice_id}/reference.wav"
        upload_as_user(self.database_url, self.storage_dir, user_id, "references", key, recording)
        user_request(
            self.database_url,
            user_id,
            "insert into voices (id, name, language, reference_object_key, reference_transcript) "
            "values (%(id)s, 'Demo clone', 'English', %(key)s, %(transcript)s)",
            {"id": voice_id, "key": key, "transcript": REFERENCE_TRANSCRIPT},
        )
        voice = await self.until("voices", voice_id, {"ready"})
        return voice_id, self.storage_dir / "references" / str(voice["normalized_object_key"])

    async def generate(self, user_id: uuid.UUID, voice_id: uuid.UUID) -> tuple[uuid.UUID, Path]:
        text = (
            "Hello from Utter."
            if self.short
            else (
                "Hello from Utter. This sentence was queued by a database trigger, picked up by the "
                "listener within milliseconds, spoken by the engine, and announced over Realtime. "
                "A text longer than one chunk is streamed: each finished chunk is stored as a "
                "segment and announced while the rest is rendered, so a browser starts playing "
                "the first sentence long before the whole file is ready."
            )
        )
        rows = user_request(
            self.database_url,
            user_id,
            "insert into generations (voice_id, text, language) values (%(voice)s, %(text)s, 'English') returning id",
            {"voice": voice_id, "text": text},
        )
        generation_id = uuid.UUID(str(rows[0]["id"]))
        generation = await self.until("generations", generation_id, {"completed"})
        return generation_id, self.storage_dir / "generations" / str(generation["audio_object_key"])

    async def design(self, user_id: uuid.UUID) -> tuple[uuid.UUID, Path]:
        rows = user_request(
            self.database_url,
            user_id,
            "insert into design_previews (instruct, text, language) values "
            "('A warm, elderly female storyteller', 'Once upon a time, a voice was born from a sentence.', 'English') "
            "returning id",
        )
        preview_id = uuid.UUID(str(rows[0]["id"]))
        preview = await self.until("design_previews", preview_id, {"completed"})
        return preview_id, self.storage_dir / "references" / str(preview["audio_object_key"])

    # -- what the browser and Storage would do ----------------------------------------

    def record_reference(self) -> bytes:
        """The bundled reference recording, spoken offline by espeak-ng (about 15 s)."""
        result = subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", REFERENCE_TRANSCRIPT],
            capture_output=True,
            check=True,
            timeout=60,
        )
        return result.stdout
