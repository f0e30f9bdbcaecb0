"""Step-level batching (gpu/decoding.py) on the tiny Qwen3-TTS models, checked against
qwen-tts's own generate: with greedy sampling a row's codes must be exactly the codes
qwen-tts generates for its text alone, whenever it joined the batch, whoever shared
its steps and whoever left before it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.tiny_qwen_model import CODEBOOK_SIZE, REAL_DEPTH, build_tiny_model
from gpu.decoding import Prompts, StepDecoder, prefill_inputs

# The tiny model's end-of-speech id is pointed at a suppressed code, so it never ends
# on its own and every row runs to its budget; greedy, so runs are comparable.
GREEDY = {"do_sample": False, "subtalker_dosample": False, "eos_token_id": CODEBOOK_SIZE + 1023}
TEXTS = (
    "Hello there, how are you today?",
    "A much longer sentence that goes on and on for a while.",
    "Short.",
    "Numbers like 1, 2 and 3 are read out too.",
)


@pytest.fixture(scope="module")
def design_model(tiny_models: dict[str, Path]) -> Any:
    from qwen_tts import Qwen3TTSModel

    return Qwen3TTSModel.from_pretrained(
        str(tiny_models["design"]), device_map="cpu", dtype=torch.float32
    )


@pytest.fixture(scope="module")
def real_depth_design_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The design model at the published checkpoint's depths (28 talker layers, 16
    codebooks: a 15-code residual loop per frame), the shape the benchmark measures."""
    from qwen_tts import Qwen3TTSModel

    folder = build_tiny_model(
        tmp_path_factory.mktemp("real-depth") / "design", "voice_design", depth=REAL_DEPTH
    )
    return Qwen3TTSModel.from_pretrained(str(folder), device_map="cpu", dtype=torch.float32)


def prompts(model: Any, texts: list[str], **options: Any) -> Prompts:
    return prefill_inputs(
        model,
        lambda: model.generate_voice_design(
            text=texts,
            language=["English"] * len(texts),
            instruct=["a calm voice"] * len(texts),
            **{**GREEDY, **options},
        ),
    )


def qwen_tts_codes(model: Any, text: str, frames: int) -> torch.Tensor:
    """The codes qwen-tts's own generate_voice_design makes for `text` alone, as they
    reach its codec (max_new_tokens n yields n - 1 frames: the last sampled code is
    never fed back)."""
    seen: list[torch.Tensor] = []
    tokenizer = model.model.speech_tokenizer
    original = tokenizer.decode

    def spy(items: list[dict[str, torch.Tensor]]) -> Any:
        seen.append(items[0]["audio_codes"])
        return original(items)

    tokenizer.decode = spy
    try:
        model.generate_voice_design(
            text=[text],
            language=["English"],
            instruct=["a calm voice"],
            max_new_tokens=frames + 1,
            **GREEDY,
        )
    finally:
        del tokenizer.decode
    return seen[0]


def run_out(decoder: StepDecoder, ended: dict[Any, Any]) -> None:
    while len(decoder):
        for finished in decoder.step():
            ended[finished.key] = finished


def test_a_row_alone_makes_exactly_the_codes_qwen_tts_makes(design_model: Any) -> None:
    decoder = StepDecoder(design_model)
    decoder.admit(["only"], [10], prompts(design_model, [TEXTS[0]]))
    ended: dict[Any, Any] = {}
    run_out(decoder, ended)
    assert torch.equal(ended["only"].codes, qwen_tts_codes(design_model, TEXTS[0], 10))
    assert ended["only"].at_limit and decoder.steps == 10


def test_rows_that_join_mid_way_and_leave_early_keep_their_own_codes(design_model: Any) -> None:
    decoder = StepDecoder(design_model)
    ended: dict[Any, Any] = {}
    decoder.admit(["a"], [12], prompts(design_model, [TEXTS[0]]))
    for _ in range(3):
        assert decoder.step() == []
    # Two rows join a running one, with prompts of other lengths; one leaves early.
    decoder.admit(["b", "c"], [5, 12], prompts(design_model, [TEXTS[1], TEXTS[2]]))
    assert len(decoder) == 3
    for _ in range(5):
        for finished in decoder.step():
            ended[finished.key] = finished
    assert set(ended) == {"b"} and len(decoder) == 2
    decoder.admit(["d"], [6], prompts(design_model, [TEXTS[3]]))
    run_out(decoder, ended)
    for key, text, frames in (("a", 0, 12), ("b", 1, 5), ("c", 2, 12), ("d", 3, 6)):
        expected = qwen_tts_codes(design_model, TEXTS[text], frames)
        assert torch.equal(ended[key].codes, expected), key
    # 12 steps for "a", the longest; the others ran inside them or just after.
    assert decoder.steps == 3 + 5 + 7


def test_a_discarded_row_leaves_and_the_others_are_unchanged(design_model: Any) -> None:
    decoder = StepDecoder(design_model)
    decoder.admit(["kept", "dropped"], [8, 8], prompts(design_model, [TEXTS[0], TEXTS[1]]))
    decoder.step()
    decoder.discard(["dropped"])
    assert [row.key for row in decoder.rows] == ["kept"]
    ended: dict[Any, Any] = {}
    run_out(decoder, ended)
    assert set(ended) == {"kept"}
    assert torch.equal(ended["kept"].codes, qwen_tts_codes(design_model, TEXTS[0], 8))


def test_an_end_of_speech_code_ends_only_its_row(design_model: Any) -> None:
    """With qwen-tts's real end-of-speech id the random model does end, at different
    steps per row; each row's codes stop before its end code."""
    decoder = StepDecoder(design_model)
    torch.manual_seed(3)
    decoder.admit(
        list(range(6)),
        [40] * 6,
        prompts(design_model, [TEXTS[n % 4] for n in range(6)], do_sample=True, eos_token_id=None),
    )
    ended: dict[Any, Any] = {}
    run_out(decoder, ended)
    eos = int(design_model.model.config.talker_config.codec_eos_token_id)
    assert set(ended) == set(range(6))
    for finished in ended.values():
        assert eos not in finished.codes[:, 0].tolist()
        assert finished.at_limit == (len(finished.codes) == 40)
        assert len(finished.codes) >= 2  # min_new_tokens


def test_the_models_own_end_code_cuts_a_row_that_was_told_to_end_at_another(
    design_model: Any,
) -> None:
    """As qwen-tts's generate does: the row runs on to its budget (or the id it was
    told to end at), and its codes stop before the model's own end-of-speech code."""
    decoder = StepDecoder(design_model)
    torch.manual_seed(3)
    decoder.admit(
        list(range(6)), [40] * 6, prompts(design_model, (list(TEXTS) * 2)[:6], do_sample=True)
    )
    ended: dict[Any, Any] = {}
    run_out(decoder, ended)
    eos = int(design_model.model.config.talker_config.codec_eos_token_id)
    assert decoder.steps == 40
    cut = [f for f in ended.values() if len(f.codes) < 40]
    assert cut, "no row sampled the end-of-speech code: pick another seed"
    for finished in ended.values():
        assert eos not in finished.codes[:, 0].tolist()
        assert finished.at_limit == (len(finished.codes) == 40)


def test_rows_with_other_sampling_settings_are_refused(design_model: Any) -> None:
    decoder = StepDecoder(design_model)
    decoder.admit(["greedy"], [4], prompts(design_model, [TEXTS[0]]))
    with pytest.raises(ValueError, match="other sampling settings"):
        decoder.admit(["sampled"], [4], prompts(design_model, [TEXTS[1]], do_sample=True))
    assert [row.key for row in decoder.rows] == ["greedy"]


def test_at_the_real_depths_rows_that_join_mid_way_keep_qwen_tts_s_codes(
    real_depth_design_model: Any,
) -> None:
    model = real_depth_design_model
    assert model.model.config.talker_config.num_code_groups == REAL_DEPTH.code_groups
    decoder = StepDecoder(model)
    ended: dict[Any, Any] = {}
    decoder.admit(["a"], [6], prompts(model, [TEXTS[0]]))
    decoder.step()
    decoder.step()
    decoder.admit(["b"], [3], prompts(model, [TEXTS[1]]))
    run_out(decoder, ended)
    for key, text, frames in (("a", 0, 6), ("b", 1, 3)):
        assert ended[key].codes.shape == (frames, REAL_DEPTH.code_groups)
        assert torch.equal(ended[key].codes, qwen_tts_codes(model, TEXTS[text], frames)), key
