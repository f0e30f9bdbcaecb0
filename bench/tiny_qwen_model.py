"""Builds a tiny, randomly initialised Qwen3-TTS model folder with qwen-tts's own
config and model classes, laid out like the real hub snapshots (config.json,
generation_config.json, text tokenizer files, speech_tokenizer/), so the real loading
and generation code (`Qwen3TTSModel.from_pretrained`, clone prompts, batched
generation, the 12 Hz codec decoder) runs in seconds on a CPU. Its output is noise.

Used by the tests (tests/gpu), the timing script (bench/tiny_qwen.py) and the speech
scheduling benchmark (bench/inference.py, at `REAL_DEPTH`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The same language names the real checkpoints carry (lower case).
LANGUAGES = (
    "chinese",
    "english",
    "japanese",
    "korean",
    "german",
    "french",
    "russian",
    "portuguese",
    "spanish",
    "italian",
)
CODE_GROUPS = 4  # the real models use 16 codebooks
CODEBOOK_SIZE = 32  # the real ones have 2048 entries
HIDDEN = 32
GENERATION_DEFAULTS = {"do_sample": True, "top_k": 50, "temperature": 0.9, "max_new_tokens": 24}


@dataclass(frozen=True)
class Depth:
    """How many layers each part has, and how many codebooks a codec frame has. The
    tests' models are one layer deep with 4 codebooks, to run in seconds; `REAL_DEPTH`
    has the real checkpoints' layer and codebook counts at the same tiny widths, so a
    decode step does the real number of sequential passes (one talker pass through 28
    layers, then 15 code predictor passes through 5), which is what a batch shares."""

    talker_layers: int = 1
    predictor_layers: int = 1
    code_groups: int = CODE_GROUPS
    codec_layers: int = 1


# The published Qwen3-TTS-12Hz-0.6B-Base config.json: a 28-layer talker, a 5-layer code
# predictor, 16 code groups; its speech tokenizer's decoder has 8 transformer layers and
# 16 quantizers (qwen-tts's defaults, core/tokenizer_12hz/
# configuration_qwen3_tts_tokenizer_v2.py `Qwen3TTSTokenizerV2DecoderConfig`).
REAL_DEPTH = Depth(talker_layers=28, predictor_layers=5, code_groups=16, codec_layers=8)


def byte_level_tokenizer(special_tokens: list[str], plain_tokens: list[str]) -> Any:
    """A Qwen2 byte-level BPE tokenizer with no merges (one token per byte), plus the
    given special tokens and whole-word tokens. Shared by the tiny TTS and ASR models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = Qwen2TokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": special_tokens})
    tokenizer.add_tokens(plain_tokens)
    return tokenizer


def _text_tokenizer() -> Any:
    """The chat and TTS special tokens the model's prompt format uses; the model slices
    "<|im_start|>assistant\n" as exactly three tokens."""
    return byte_level_tokenizer(
        ["<|im_start|>", "<|im_end|>", "<|tts_pad|>", "<|tts_bos|>", "<|tts_eos|>"],
        ["assistant", "user"],
    )


def build_tiny_model(
    folder: Path, model_type: str = "base", seed: int = 0, depth: Depth = Depth()
) -> Path:
    """Write a tiny model of `model_type` ("base": clone, "voice_design": design)
    into `folder` and return it."""
    import torch
    from qwen_tts.core.models import (
        Qwen3TTSConfig,
        Qwen3TTSForConditionalGeneration,
        Qwen3TTSProcessor,
    )
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Config,
    )
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Model,
    )
    from transformers import EncodecFeatureExtractor

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _text_tokenizer()
    token = tokenizer.convert_tokens_to_ids

    # Codec ids: codebook entries first, then the control ids in the last 1024 slots
    # (the model suppresses that range except for end-of-speech while sampling).
    control = CODEBOOK_SIZE
    talker = {
        "vocab_size": CODEBOOK_SIZE + 1024,
        "hidden_size": HIDDEN,
        "intermediate_size": 2 * HIDDEN,
        "num_hidden_layers": depth.talker_layers,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "text_hidden_size": HIDDEN,
        "text_vocab_size": len(tokenizer) + 8,
        "num_code_groups": depth.code_groups,
        "max_position_embeddings": 4096,
        "rope_scaling": {"rope_type": "default", "mrope_section": [4, 2, 2], "interleaved": True},
        "codec_pad_id": control,
        "codec_bos_id": control + 1,
        "codec_eos_token_id": control + 2,
        "codec_think_id": control + 3,
        "codec_nothink_id": control + 4,
        "codec_think_bos_id": control + 5,
        "codec_think_eos_id": control + 6,
        "codec_language_id": {name: control + 16 + i for i, name in enumerate(LANGUAGES)},
        "spk_id": {},
        "spk_is_dialect": {},
        "code_predictor_config": {
            "vocab_size": CODEBOOK_SIZE,
            "hidden_size": HIDDEN,
            "intermediate_size": 2 * HIDDEN,
            "num_hidden_layers": depth.predictor_layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "num_code_groups": depth.code_groups,
            "max_position_embeddings": 64,
        },
    }
    speaker_encoder = {
        "mel_dim": 128,  # fixed by the model's mel front end
        "enc_dim": HIDDEN,  # the speaker embedding sits among the talker's inputs
        "enc_channels": [16, 16, 16, 16, 48],
        "enc_attention_channels": 8,
        "enc_res2net_scale": 2,
        "enc_se_channels": 8,
        "sample_rate": 24000,
    }
    config = Qwen3TTSConfig(
        talker_config=talker,
        speaker_encoder_config=speaker_encoder,
        tokenizer_type="qwen3_tts_tokenizer_12hz",
        tts_model_size="0b6",
        tts_model_type=model_type,
        im_start_token_id=token("<|im_start|>"),
        im_end_token_id=token("<|im_end|>"),
        tts_pad_token_id=token("<|tts_pad|>"),
        tts_bos_token_id=token("<|tts_bos|>"),
        tts_eos_token_id=token("<|tts_eos|>"),
    )
    Qwen3TTSForConditionalGeneration(config).save_pretrained(folder)
    Qwen3TTSProcessor(tokenizer=tokenizer).save_pretrained(folder)
    # The speaker encoder config class takes only its own fields (no **kwargs), as in
    # the published config.json; save_pretrained adds generic ones it would reject.
    saved = json.loads((folder / "config.json").read_text())
    saved["speaker_encoder_config"] = speaker_encoder
    (folder / "config.json").write_text(json.dumps(saved, indent=2))
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_DEFAULTS))

    # The 12 Hz codec: a Mimi encoder and the Qwen decoder, 24 kHz in and out, 1920
    # samples per code frame (the real rates; only the widths are tiny).
    codec = Qwen3TTSTokenizerV2Config(
        encoder_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "num_filters": 4,
            "codebook_size": CODEBOOK_SIZE,
            "codebook_dim": 16,
            "vector_quantization_hidden_dimension": 16,
            "num_quantizers": depth.code_groups,
            "num_semantic_quantizers": 1,
            "upsample_groups": 16,
            "sliding_window": 16,
            "max_position_embeddings": 256,
            "use_streaming": False,
        },
        decoder_config={
            "codebook_size": CODEBOOK_SIZE,
            "codebook_dim": 16,
            "hidden_size": 16,
            "latent_dim": 16,
            "intermediate_size": 32,
            "num_hidden_layers": depth.codec_layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "num_quantizers": depth.code_groups,
            "decoder_dim": 32,
            "sliding_window": 8,
            "max_position_embeddings": 256,
        },
        encoder_valid_num_quantizers=depth.code_groups,
    )
    speech_tokenizer = folder / "speech_tokenizer"
    Qwen3TTSTokenizerV2Model(codec).save_pretrained(speech_tokenizer)
    EncodecFeatureExtractor(
        feature_size=1, sampling_rate=24000, padding_value=0.0, return_attention_mask=True
    ).save_pretrained(speech_tokenizer)
    return folder
