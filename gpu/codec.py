"""Codec frames to audio with Qwen3-TTS's 12 Hz decoder, its attention masks made once
per length.

qwen-tts decodes through `Qwen3TTSTokenizerV2Decoder.forward` (qwen_tts 0.1.1,
core/tokenizer_12hz/modeling_qwen3_tts_tokenizer_v2.py), whose pre-transformer has
transformers build its causal and sliding-window masks on every call, through vmap:
on a CPU that costs more than the rest of a short decode. The masks depend only on the
number of frames, so here they are built once per length and handed to the
pre-transformer, which uses prepared masks as they are (its forward skips building
them when given a mapping); every other piece of the decoder is qwen-tts's own module,
called in the order its forward calls them. Long inputs are decoded in pieces with
left context exactly as qwen-tts's `chunked_decode` does. tests/gpu/test_codec.py
checks the samples against qwen-tts's own decode.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

# qwen-tts's `chunked_decode` defaults: frames decoded per piece, and frames of the
# piece before decoded again in front of each piece for their context.
PIECE_FRAMES = 300
PIECE_CONTEXT_FRAMES = 25


class CodecDecoder:
    def __init__(self, speech_tokenizer: Any) -> None:
        self.model = speech_tokenizer.model  # Qwen3TTSTokenizerV2Model
        self.decoder = self.model.decoder
        self.samples_per_frame = int(self.model.get_decode_upsample_rate())
        self.window = self.decoder.pre_transformer.config.sliding_window

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """`codes` (frames, groups) as a float waveform (frames * samples_per_frame
        samples, in [-1, 1])."""
        with torch.inference_mode():
            return self._decode(codes)

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        frames = codes.shape[0]
        if frames == 0:
            return torch.zeros(0)
        device = next(self.decoder.parameters()).device
        grouped = codes.to(device).clamp(min=0).transpose(0, 1).unsqueeze(0)  # (1, groups, T)
        pieces = []
        start = 0
        while start < frames:
            end = min(start + PIECE_FRAMES, frames)
            context = min(PIECE_CONTEXT_FRAMES, start)
            wav = self._forward(grouped[..., start - context : end])
            pieces.append(wav[..., context * self.samples_per_frame :])
            start = end
        return torch.cat(pieces, dim=-1).reshape(-1).float()

    def _forward(self, codes: torch.Tensor) -> torch.Tensor:
        decoder = self.decoder
        hidden = decoder.quantizer.decode(codes)
        hidden = decoder.pre_conv(hidden).transpose(1, 2)
        masks = _masks(hidden.shape[1], self.window, hidden.dtype, str(hidden.device))
        hidden = decoder.pre_transformer(inputs_embeds=hidden, attention_mask=masks)
        hidden = hidden.last_hidden_state.permute(0, 2, 1)
        for blocks in decoder.upsample:
            for block in blocks:
                hidden = block(hidden)
        wav = hidden
        for block in decoder.decoder:
            wav = block(wav)
        return wav.clamp(min=-1, max=1)


@lru_cache(maxsize=64)
def _masks(
    length: int, window: int | None, dtype: torch.dtype, device: str
) -> dict[str, torch.Tensor]:
    """Additive (1, 1, length, length) masks: causal, and causal within the sliding
    window (a position sees the `window` positions up to itself, as transformers'
    sliding-window overlay has it)."""
    query = torch.arange(length, device=device)[:, None]
    key = torch.arange(length, device=device)[None, :]
    blocked = torch.finfo(dtype).min

    def additive(allowed: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros((1, 1, length, length), dtype=dtype, device=device)
        return mask.masked_fill(~allowed[None, None], blocked)

    causal = key <= query
    masks = {"full_attention": additive(causal)}
    if window is not None:
        masks["sliding_attention"] = additive(causal & (key > query - window))
    return masks
