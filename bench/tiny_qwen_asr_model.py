"""Builds a tiny, randomly initialised Qwen3-ASR model folder with qwen-asr's own
config, model and processor classes, laid out like the published checkpoints
(config.json, tokenizer files with the audio tokens, the Whisper-style feature
extractor, a chat template), so the real loading, batched transcription and forced
alignment code (`Qwen3ASRModel.from_pretrained`, `Qwen3ForcedAligner`) runs in
seconds on a CPU. It hears nothing: its transcripts are random text.

The same folder serves as the recogniser and as the forced aligner (both are
`Qwen3ASRForConditionalGeneration`; the aligner reads `timestamp_token_id` and
`timestamp_segment_time` from the config).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.tiny_qwen_model import byte_level_tokenizer

# The names qwen-asr's own language list uses (qwen_asr/inference/utils.py).
LANGUAGES = ("Chinese", "English", "Japanese", "Korean", "German", "French", "Spanish")
HIDDEN = 32
# Tokens the prompt format and the aligner use; the audio ones are named in the
# tokenizer config, where Qwen3ASRProcessor reads them (tokenizer.audio_token, ...).
AUDIO_TOKENS = {
    "audio_bos_token": "<|audio_start|>",
    "audio_token": "<|audio_pad|>",
    "audio_eos_token": "<|audio_end|>",
}
# Our own template with the shape qwen-asr's prompts rely on: the system context, the
# user turn holding one audio placeholder, then the assistant turn.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message.role }}\n"
    "{%- if message.content is string -%}{{ message.content }}"
    "{%- else -%}{%- for part in message.content -%}"
    "{%- if part.type == 'audio' -%}<|audio_start|><|audio_pad|><|audio_end|>"
    "{%- elif part.type == 'text' -%}{{ part.text }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}<|im_end|>\n"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)


def build_tiny_asr_model(folder: Path, seed: int = 0) -> Path:
    """Write a tiny Qwen3-ASR model into `folder` and return it."""
    import torch
    from qwen_asr.core.transformers_backend import (
        Qwen3ASRConfig,
        Qwen3ASRForConditionalGeneration,
        Qwen3ASRProcessor,
    )
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_level_tokenizer(
        ["<|im_start|>", "<|im_end|>", *AUDIO_TOKENS.values(), "<asr_text>", "<timestamp>"],
        ["assistant", "user", "system", "language"],
    )
    token = tokenizer.convert_tokens_to_ids
    config = Qwen3ASRConfig(
        thinker_config={
            "audio_config": {
                # The real front end: 128 mel bins, 100-frame windows (n_window 50),
                # three stride-2 convolutions; only the widths are tiny.
                "num_mel_bins": 128,
                "encoder_layers": 1,
                "encoder_attention_heads": 2,
                "encoder_ffn_dim": 2 * HIDDEN,
                "d_model": HIDDEN,
                "n_window": 50,
                "n_window_infer": 400,
                "conv_chunksize": 500,
                "downsample_hidden_size": 8,
                "output_dim": HIDDEN,
            },
            "text_config": {
                "vocab_size": len(tokenizer),
                "hidden_size": HIDDEN,
                "intermediate_size": 2 * HIDDEN,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 16,
                "max_position_embeddings": 4096,
                "rope_scaling": {
                    "rope_type": "default",
                    "mrope_section": [4, 2, 2],
                    "interleaved": True,
                },
            },
            "audio_token_id": token(AUDIO_TOKENS["audio_token"]),
            "audio_start_token_id": token(AUDIO_TOKENS["audio_bos_token"]),
            "user_token_id": token("user"),
        },
        support_languages=list(LANGUAGES),
        # Read by Qwen3ForcedAligner: timestamps are token ids times this many ms.
        timestamp_token_id=token("<timestamp>"),
        timestamp_segment_time=80,
    )
    model = Qwen3ASRForConditionalGeneration(config)
    # Random weights would mostly emit special tokens and stray UTF-8 bytes, which
    # decode to little or nothing. Zeroing every other output row makes it speak lower
    # case letters and spaces, so its transcripts are long enough to be used.
    spoken = [token(character) for character in "abcdefghijklmnopqrstuvwxyzĠ"]
    with torch.no_grad():
        silenced = torch.ones(model.thinker.lm_head.weight.shape[0], dtype=torch.bool)
        silenced[spoken] = False
        model.thinker.lm_head.weight[silenced] = 0
    model.save_pretrained(folder)
    # The audio tokens are named in tokenizer_config.json, as in the published files;
    # reloading is how a tokenizer picks them up.
    tokenizer.save_pretrained(folder)
    tokenizer_config = folder / "tokenizer_config.json"
    saved = json.loads(tokenizer_config.read_text())
    saved["extra_special_tokens"] = AUDIO_TOKENS
    tokenizer_config.write_text(json.dumps(saved, indent=2))
    tokenizer = AutoTokenizer.from_pretrained(folder)  # type: ignore[no-untyped-call]
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)  # type: ignore[no-untyped-call]
    Qwen3ASRProcessor(features, tokenizer, chat_template=CHAT_TEMPLATE).save_pretrained(folder)
    return folder
