"""The codec decoder with prepared masks (gpu/codec.py) against qwen-tts's own decode,
on the tiny model's 12 Hz codec: the same samples, short inputs and inputs decoded in
pieces alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bench.tiny_qwen_model import CODE_GROUPS, CODEBOOK_SIZE, REAL_DEPTH, build_tiny_model
from gpu.codec import PIECE_FRAMES, CodecDecoder


@pytest.fixture(scope="module")
def speech_tokenizer(tiny_models: dict[str, Path]) -> Any:
    from qwen_tts import Qwen3TTSModel

    model = Qwen3TTSModel.from_pretrained(
        str(tiny_models["base"]), device_map="cpu", dtype=torch.float32
    )
    return model.model.speech_tokenizer


@pytest.mark.parametrize("frames", [1, 7, 40, PIECE_FRAMES + 35])
def test_the_samples_are_qwen_tts_s_own(speech_tokenizer: Any, frames: int) -> None:
    torch.manual_seed(frames)
    codes = torch.randint(0, CODEBOOK_SIZE, (frames, CODE_GROUPS))
    (expected,), rate = speech_tokenizer.decode([{"audio_codes": codes}])
    decoded = CodecDecoder(speech_tokenizer).decode(codes)
    assert rate == 24_000 and decoded.shape == (frames * 1920,)
    assert torch.equal(decoded, torch.from_numpy(expected))


def test_no_frames_is_no_samples(speech_tokenizer: Any) -> None:
    codes = torch.zeros((0, CODE_GROUPS), dtype=torch.long)
    assert CodecDecoder(speech_tokenizer).decode(codes).shape == (0,)


def test_at_the_real_depths_the_samples_are_qwen_tts_s_own(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """16 codebooks and an 8-layer codec transformer, as the published codec has."""
    from qwen_tts import Qwen3TTSModel

    folder = build_tiny_model(tmp_path_factory.mktemp("real-depth") / "base", depth=REAL_DEPTH)
    tokenizer = Qwen3TTSModel.from_pretrained(
        str(folder), device_map="cpu", dtype=torch.float32
    ).model.speech_tokenizer
    torch.manual_seed(0)
    codes = torch.randint(0, CODEBOOK_SIZE, (30, REAL_DEPTH.code_groups))
    (expected,), _ = tokenizer.decode([{"audio_codes": codes}])
    assert torch.equal(CodecDecoder(tokenizer).decode(codes), torch.from_numpy(expected))
