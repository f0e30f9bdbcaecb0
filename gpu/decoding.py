"""Step-level batching of Qwen3-TTS generation: one running batch per model that rows
join and leave at any decode step.

qwen-tts's `generate` runs a fixed batch from its prompts to the end of its longest
sequence: a row that ends early idles until the last one does, and nothing can join
mid-way. This module runs the same model arithmetic one codec frame at a time over a
batch it owns, so a chunk starts at the next step after it arrives and leaves the step
it ends (its end-of-speech code, or its own token budget); the freed place goes to the
next waiting chunk. That is continuous batching as LLM servers do it, for a talker
whose every step also runs the code predictor for the frame's residual codebooks.

What is mirrored from qwen-tts 0.1.1 (core/models/modeling_qwen3_tts.py), and where:

- Prompts are qwen-tts's own: `prefill_inputs` runs qwen-tts's public generate call
  (`generate_voice_clone` / `generate_voice_design`) up to the point where
  `Qwen3TTSForConditionalGeneration.generate` hands its talker the left-padded prompt
  embeddings, trailing text embeddings and sampling settings (`self.talker.generate(...)`
  at the end of that method), and takes them there. Nothing of the prompt format is
  rebuilt here.
- A decode step is `Qwen3TTSTalkerForConditionalGeneration.forward`'s generate branch:
  the code predictor samples the frame's residual codes from (previous hidden state,
  first code's embedding); the next input is the sum of the frame's code embeddings
  plus the next trailing text embedding, or the pad embedding once the text is used up.
- Positions are the talker's 1-D positions expanded to its three rope sections, each
  row counting only its own tokens (`get_rope_index`: cumulative sum of the attention
  mask), so left padding never shifts a row.
- Sampling follows the settings `generate` passes its talker (`talker_kwargs`):
  repetition penalty over the row's own first codes, suppressed control codes, no
  end-of-speech before `min_new_tokens`, then temperature, top-k and top-p, as
  transformers' generation applies them in that order.
- A row's codes end before its end-of-speech code, as `generate` cuts
  `effective_lengths`.

Rows are independent: a row's codes do not depend on which other rows share its steps
(tests/gpu/test_decoding.py checks this against qwen-tts's own generate, greedily).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import DynamicCache
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


class _PromptCaptured(Exception):
    """Raised from inside qwen-tts's generate once it has built the talker's inputs."""

    def __init__(self, inputs: dict[str, Any]) -> None:
        super().__init__("talker inputs captured")
        self.inputs = inputs


@dataclass(frozen=True)
class Sampling:
    """The talker's sampling settings, as qwen-tts's generate passes them."""

    do_sample: bool
    top_k: int
    top_p: float
    temperature: float
    repetition_penalty: float
    min_new_tokens: int
    eos_token_id: int
    suppress_tokens: tuple[int, ...]
    subtalker_dosample: bool
    subtalker_top_k: int
    subtalker_top_p: float
    subtalker_temperature: float

    @classmethod
    def from_talker_kwargs(cls, kwargs: dict[str, Any]) -> Sampling:
        return cls(
            do_sample=bool(kwargs["do_sample"]),
            top_k=int(kwargs["top_k"]),
            top_p=float(kwargs["top_p"]),
            temperature=float(kwargs["temperature"]),
            repetition_penalty=float(kwargs["repetition_penalty"]),
            min_new_tokens=int(kwargs.get("min_new_tokens", 0)),
            eos_token_id=int(kwargs["eos_token_id"]),
            suppress_tokens=tuple(int(t) for t in kwargs.get("suppress_tokens", ())),
            subtalker_dosample=bool(kwargs["subtalker_dosample"]),
            subtalker_top_k=int(kwargs["subtalker_top_k"]),
            subtalker_top_p=float(kwargs["subtalker_top_p"]),
            subtalker_temperature=float(kwargs["subtalker_temperature"]),
        )


@dataclass(frozen=True)
class Prompts:
    """Left-padded prompts of some rows, as qwen-tts hands them to its talker."""

    embeds: torch.Tensor  # (rows, length, hidden)
    mask: torch.Tensor  # (rows, length): 1 for a prompt position, 0 for padding
    trailing: torch.Tensor  # (rows, text, hidden): text fed one position per step
    pad_embed: torch.Tensor  # (1, 1, hidden): fed once a row's text is used up
    sampling: Sampling


def prefill_inputs(model: Any, call: Callable[[], Any]) -> Prompts:
    """The talker inputs qwen-tts builds for `call` (a `generate_voice_clone` or
    `generate_voice_design` call on `model`, a qwen_tts.Qwen3TTSModel), without
    generating: its talker's generate is replaced for the duration of the call by one
    that records its arguments and stops. The caller holds the model's lock."""
    talker = model.model.talker

    def capture(**kwargs: Any) -> Any:
        raise _PromptCaptured(kwargs)

    talker.generate = capture
    try:
        call()
    except _PromptCaptured as captured:
        inputs = captured.inputs
    else:  # pragma: no cover - qwen-tts always reaches its talker
        raise RuntimeError("qwen-tts returned without calling its talker")
    finally:
        del talker.generate  # the class's method again
    return Prompts(
        embeds=inputs["inputs_embeds"],
        mask=inputs["attention_mask"],
        trailing=inputs["trailing_text_hidden"],
        pad_embed=inputs["tts_pad_embed"],
        sampling=Sampling.from_talker_kwargs(inputs),
    )


@dataclass(eq=False)
class Row:
    """One sequence in the running batch."""

    key: Hashable
    budget: int  # frames at most
    trailing: torch.Tensor  # (text, hidden)
    position: int  # rope position of the next input
    next_code: int  # first code sampled and not yet fed back
    hidden: torch.Tensor  # (1, hidden): the talker's last hidden state
    seen: torch.Tensor  # (vocab,) bool: first codes it sampled (for the repetition penalty)
    codes: list[torch.Tensor] = field(default_factory=list)  # (groups,) per frame
    sampled: int = 1  # first codes sampled so far
    cut: int | None = None  # frames before the model's own end-of-speech code, once sampled

    @property
    def frames(self) -> int:
        return len(self.codes)

    @property
    def usable(self) -> int:
        """Frames before the model's own end-of-speech code: the ones that are audio."""
        return self.frames if self.cut is None else self.cut


@dataclass(frozen=True)
class Finished:
    key: Hashable
    codes: torch.Tensor  # (frames, groups)
    at_limit: bool  # used its whole budget without an end-of-speech code


class StepDecoder:
    """The running batch of one Qwen3-TTS model. Not thread-safe: the caller serialises
    `admit`, `step` and `discard` with every other use of the model."""

    def __init__(self, model: Any) -> None:
        self.model = model  # qwen_tts.Qwen3TTSModel
        self.talker = model.model.talker
        self.rows: list[Row] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # (rows, cache length)
        self._pad_embed: torch.Tensor | None = None
        self._sampling: Sampling | None = None
        # qwen-tts cuts a sequence's codes at the model's own end-of-speech code even
        # where generation was told to stop at another id (`effective_lengths`), and
        # generates on to that id or its budget; so does a row here (the two ids are
        # one in production; benchmarks point the other at a suppressed code).
        self._codec_eos = int(self.talker.config.codec_eos_token_id)
        self.steps = 0  # decode steps run (read by tests and benchmarks)

    def __len__(self) -> int:
        return len(self.rows)

    def codes(self, key: Hashable) -> torch.Tensor:
        """A running row's usable codes so far (frames, groups)."""
        row = next(row for row in self.rows if row.key == key)
        return torch.stack(row.codes[: row.usable]) if row.usable else self._no_codes()

    # -- joining -----------------------------------------------------------------

    def admit(self, keys: Sequence[Hashable], budgets: Sequence[int], prompts: Prompts) -> None:
        """Prefill `prompts` (one row per key) and add the rows to the running batch,
        whose own rows are untouched: on an exception nothing was added."""
        with torch.inference_mode():
            self._admit(keys, budgets, prompts)

    def _admit(self, keys: Sequence[Hashable], budgets: Sequence[int], prompts: Prompts) -> None:
        if not keys:
            return
        if self.rows and prompts.sampling != self._sampling:
            raise ValueError("rows with other sampling settings cannot share a batch")
        mask = prompts.mask.to(self.talker.device)
        positions = _positions(mask)
        cache = DynamicCache()
        out = self.talker.model(
            inputs_embeds=prompts.embeds,
            attention_mask=mask,
            position_ids=positions.unsqueeze(0).expand(3, -1, -1),
            past_key_values=cache,
            use_cache=True,
            cache_position=torch.arange(mask.shape[1], device=mask.device),
        )
        hidden = out.last_hidden_state[:, -1, :]
        logits = self.talker.codec_head(hidden)
        first = _sample(logits, None, [0] * len(keys), prompts.sampling)
        seen = torch.zeros_like(logits, dtype=torch.bool)
        seen[torch.arange(len(keys), device=seen.device), first] = True
        # One transfer each, not one per row (each would wait for the device).
        codes, lengths = first.tolist(), mask.sum(dim=1).tolist()
        rows = [
            Row(
                key=key,
                budget=max(1, int(budget)),
                trailing=prompts.trailing[n],
                position=int(lengths[n]),
                next_code=codes[n],
                hidden=hidden[n : n + 1],
                seen=seen[n],
                cut=0 if codes[n] == self._codec_eos else None,
            )
            for n, (key, budget) in enumerate(zip(keys, budgets, strict=True))
        ]
        self._cache, self._mask = _join(self._cache, self._mask, cache, mask)
        self.rows.extend(rows)
        self._pad_embed = prompts.pad_embed
        self._sampling = prompts.sampling

    # -- running -----------------------------------------------------------------

    def step(self) -> list[Finished]:
        """One codec frame for every row. Returns the rows that ended at this step
        (they have left the batch); the others have one more frame."""
        with torch.inference_mode():
            return self._step()

    def _step(self) -> list[Finished]:
        if not self.rows:
            return []
        assert self._sampling is not None
        sampling = self._sampling
        end = sampling.eos_token_id
        # A row whose first code (sampled at its prefill) ends it has no frames.
        finished = [
            Finished(row.key, self._no_codes(), at_limit=False)
            for row in self.rows
            if row.next_code == end
        ]
        if finished:
            self._keep([n for n, row in enumerate(self.rows) if row.next_code != end])
        if not self.rows:
            return finished
        assert self._cache is not None and self._mask is not None
        assert self._pad_embed is not None
        device = self.talker.device
        first = torch.tensor([[row.next_code] for row in self.rows], device=device)
        first_embeds = self.talker.get_input_embeddings()(first)  # (rows, 1, hidden)
        hidden = torch.cat([row.hidden for row in self.rows]).unsqueeze(1)
        residual = self._residual_codes(torch.cat((hidden, first_embeds), dim=1), sampling)
        frame = torch.cat((first, residual), dim=-1)  # (rows, groups)
        residual_embeddings = self.talker.code_predictor.get_input_embeddings()
        embeds = first_embeds + sum(
            residual_embeddings[i](residual[:, i : i + 1]) for i in range(residual.shape[1])
        )
        text = torch.stack([
            row.trailing[row.frames] if row.frames < row.trailing.shape[0] else self._pad_embed[0, 0]
            for row in self.rows
        ])  # fmt: skip
        embeds = embeds + text.unsqueeze(1)
        for row, codes in zip(self.rows, frame, strict=True):
            row.codes.append(codes)
        self._mask = torch.cat((self._mask, self._mask.new_ones((len(self.rows), 1))), dim=1)
        positions = torch.tensor([[row.position] for row in self.rows], device=device)
        length = self._cache.get_seq_length()
        out = self.talker.model(
            inputs_embeds=embeds,
            attention_mask=self._step_mask(embeds.dtype),
            position_ids=positions.unsqueeze(0).expand(3, -1, -1),
            past_key_values=self._cache,
            use_cache=True,
            cache_position=torch.arange(length, length + 1, device=device),
        )
        last = out.last_hidden_state[:, -1, :]
        logits = self.talker.codec_head(last)
        seen = torch.stack([row.seen for row in self.rows])
        sampled = _sample(logits, seen, [row.sampled for row in self.rows], sampling)
        seen[torch.arange(len(self.rows), device=seen.device), sampled] = True
        keep: list[int] = []
        for n, (row, code) in enumerate(zip(self.rows, sampled.tolist(), strict=True)):
            row.position += 1
            row.hidden = last[n : n + 1]
            row.next_code = code
            row.seen = seen[n]
            row.sampled += 1
            if code == self._codec_eos and row.cut is None:
                row.cut = row.frames
            if code == end or row.frames >= row.budget:
                kept = row.codes if row.cut is None else row.codes[: row.cut]
                codes = torch.stack(kept) if kept else self._no_codes()
                at_limit = code != end and row.cut is None
                finished.append(Finished(row.key, codes, at_limit=at_limit))
            else:
                keep.append(n)
        self.steps += 1
        if finished:
            self._keep(keep)
        return finished

    def discard(self, keys: Sequence[Hashable]) -> None:
        """Drop these rows (cancelled, or in a failed step) from the batch."""
        gone = set(keys)
        self._keep([n for n, row in enumerate(self.rows) if row.key not in gone])

    def reset(self) -> None:
        """Forget every row (after a step failed half-way, the cache is not to be trusted)."""
        self.rows = []
        self._cache = None
        self._mask = None

    # -- internals -----------------------------------------------------------------

    def _keep(self, indices: list[int]) -> None:
        if len(indices) == len(self.rows):
            return
        self.rows = [self.rows[n] for n in indices]
        if not self.rows:
            self.reset()
            return
        assert self._cache is not None and self._mask is not None
        index = torch.tensor(indices, device=self._mask.device)
        mask = self._mask.index_select(0, index)
        # Columns that are padding for every row left are dropped.
        start = int((mask.sum(dim=0) > 0).nonzero()[0])
        self._mask = mask[:, start:]
        kept = DynamicCache()
        for layer, (keys, values) in enumerate(_layers(self._cache)):
            kept.update(
                keys.index_select(0, index)[:, :, start:],
                values.index_select(0, index)[:, :, start:],
                layer,
            )
        self._cache = kept

    def _step_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """The attention mask of a one-position step: every row sees its own positions
        and none of its padding. Built here as the 4-D additive mask the attention
        takes (transformers passes a 4-D mask through as it is); from the 2-D one,
        transformers would rebuild it per step through vmap, which costs more than
        the tiny models' whole step. flash-attention takes the 2-D mask itself."""
        assert self._mask is not None
        if self.talker.config._attn_implementation == "flash_attention_2":
            return self._mask
        blocked = (self._mask == 0)[:, None, None, :]
        mask = torch.zeros(blocked.shape, dtype=dtype, device=self._mask.device)
        return mask.masked_fill(blocked, torch.finfo(dtype).min)

    def _residual_codes(self, inputs: torch.Tensor, sampling: Sampling) -> torch.Tensor:
        """The frame's residual codes (rows, groups - 1), from (rows, 2, hidden): the
        talker's last hidden state and the first code's embedding. qwen-tts runs this
        through transformers' generate on its code predictor (max_new_tokens = groups
        - 1); here the same forward calls run directly, without generate's per-call
        set-up, which on small models costs more than the calls: the prompt's two
        positions, then one position per code, each code from its own head
        (`lm_head[g]`) and fed back through its own embedding (the code predictor's
        forward in qwen-tts: `generation_steps`)."""
        predictor = self.talker.code_predictor
        cache = DynamicCache()
        embeds = predictor.small_to_mtp_projection(inputs)
        codes: list[torch.Tensor] = []
        for group in range(self.talker.config.num_code_groups - 1):
            length = cache.get_seq_length()
            out = predictor.model(
                inputs_embeds=embeds,
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(length, length + embeds.shape[1], device=embeds.device),
            )
            logits = predictor.lm_head[group](out.last_hidden_state[:, -1, :])
            code = _pick(
                logits.float(),
                sampling.subtalker_dosample,
                sampling.subtalker_top_k,
                sampling.subtalker_top_p,
                sampling.subtalker_temperature,
            )
            codes.append(code)
            embedding = predictor.model.get_input_embeddings()[group]
            embeds = predictor.small_to_mtp_projection(embedding(code[:, None]))
        return torch.stack(codes, dim=1)

    def _no_codes(self) -> torch.Tensor:
        groups = int(self.talker.config.num_code_groups)
        return torch.empty((0, groups), dtype=torch.long, device=self.talker.device)


def _sample(
    logits: torch.Tensor,
    seen: torch.Tensor | None,
    sampled: Sequence[int],
    sampling: Sampling,
) -> torch.Tensor:
    """The next first code of each row, from `logits` (rows, vocab): `seen` (rows,
    vocab) marks the first codes each row already sampled (repetition penalty),
    `sampled` counts them (no end of speech before `min_new_tokens`)."""
    scores = logits.float()
    if seen is not None and sampling.repetition_penalty != 1.0:
        penalised = torch.where(
            scores < 0,
            scores * sampling.repetition_penalty,
            scores / sampling.repetition_penalty,
        )
        scores = torch.where(seen, penalised, scores)
    if sampling.suppress_tokens:
        scores[:, list(sampling.suppress_tokens)] = -float("inf")
    early = [n for n, count in enumerate(sampled) if count < sampling.min_new_tokens]
    if early:
        scores[early, sampling.eos_token_id] = -float("inf")
    return _pick(scores, sampling.do_sample, sampling.top_k, sampling.top_p, sampling.temperature)


def _pick(
    scores: torch.Tensor, do_sample: bool, top_k: int, top_p: float, temperature: float
) -> torch.Tensor:
    """Greedy, or sampled after temperature, top-k and top-p, in the order
    transformers' generation applies them."""
    if not do_sample:
        return scores.argmax(dim=-1)
    no_ids = torch.empty((scores.shape[0], 0), dtype=torch.long, device=scores.device)
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(no_ids, scores)
    if top_k > 0:
        scores = TopKLogitsWarper(top_k)(no_ids, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(no_ids, scores)
    return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Each prompt position's rope position: its row's own tokens counted, padding at 1
    (qwen-tts's `get_rope_index`)."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


def _layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _join(
    cache: DynamicCache | None,
    mask: torch.Tensor | None,
    new_cache: DynamicCache,
    new_mask: torch.Tensor,
) -> tuple[DynamicCache, torch.Tensor]:
    """The running batch's cache and mask with new rows appended, both sides left-padded
    to the longer length (padding is masked out, and keys carry their rotary positions,
    so shifting a row right changes nothing it attends to)."""
    if cache is None or mask is None:
        return new_cache, new_mask
    length = max(mask.shape[1], new_mask.shape[1])

    def left_pad(tensor: torch.Tensor, dim: int) -> torch.Tensor:
        missing = length - tensor.shape[dim]
        if missing == 0:
            return tensor
        shape = list(tensor.shape)
        shape[dim] = missing
        return torch.cat((tensor.new_zeros(shape), tensor), dim=dim)

    joined = DynamicCache()
    for layer, ((keys, values), (new_keys, new_values)) in enumerate(
        zip(_layers(cache), _layers(new_cache), strict=True)
    ):
        joined.update(
            torch.cat((left_pad(keys, 2), left_pad(new_keys, 2))),
            torch.cat((left_pad(values, 2), left_pad(new_values, 2))),
            layer,
        )
    return joined, torch.cat((left_pad(mask, 1), left_pad(new_mask, 1)))
