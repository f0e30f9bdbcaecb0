"""A short request is never held behind a long one, end to end: the listener runs the
in-process Qwen3-TTS engine (real qwen-tts code on tiny random models), whose chunk
scheduler serves every request in flight chunk by chunk. A one-sentence generation
inserted while a long one runs completes first, with its segments streamed, while the
long one is still being rendered. Ordering only, from the tasks' own timestamps."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.tiny_qwen_model import build_tiny_model
from gpu.qwen_local import QwenLocalEngine
from gpu.qwen_runtime import DEFAULT_BASE_MODEL, DEFAULT_DESIGN_MODEL
from tests.listener.conftest import Admin, RunListener, ready_voice

LONG_TEXT = " ".join(
    f"Sentence {n} belongs to a long text that takes many chunks to speak." for n in range(60)
)
SHORT_TEXT = "One short sentence, please."


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qwen-weights")
    build_tiny_model(root / DEFAULT_BASE_MODEL, "base")
    build_tiny_model(root / DEFAULT_DESIGN_MODEL, "voice_design")
    return root


async def test_a_short_generation_inserted_during_a_long_one_ends_first(
    admin: Admin, run_listener: RunListener, tiny_weights: Path
) -> None:
    user = admin.new_user()
    engine = QwenLocalEngine.from_env(
        {"UTTER_QWEN_MODEL_DIR": str(tiny_weights), "UTTER_QWEN_DEVICE": "cpu"},
        generate_options={"max_new_tokens": 12},
        max_chunk_chars=80,  # a sentence a chunk: 60 chunks, many rounds of the batch
    )
    async with run_listener(engine=engine):
        voice = await ready_voice(admin, user)
        long = user.generate(voice, LONG_TEXT)
        # The long one is running, with its first segment out, when the short one comes.
        await admin.wait_until(
            "select count(*) > 0 from generation_segments where generation_id = %s", (long,)
        )
        short = user.generate(voice, SHORT_TEXT)
        await admin.wait_until(
            "select status = 'completed' from generations where id = %s", (short,), within=120
        )
        await admin.wait_until(
            "select status = 'completed' from generations where id = %s", (long,), within=300
        )
    long_task = admin.task_of("generation_id", long)
    short_task = admin.task_of("generation_id", short)
    assert long_task["started_at"] < short_task["created_at"]
    assert short_task["ended_at"] < long_task["ended_at"]
    removals = admin.value(
        "select count(*) from (select message from pgmq.q_storage_cleanup "
        "union all select message from pgmq.a_storage_cleanup) m where message ->> 'keys' like %s",
        (f"%{long}/segments/%",),
    )
    assert removals > 0, "the long one streamed segments, removed once its final file was adopted"
