"""Speech scheduling on tiny Qwen3-TTS models (bench/tiny_qwen_model.py at
`REAL_DEPTH`: the real checkpoints' layer and codebook counts at tiny widths), on the
CPU unless `--device` says otherwise:

- requests per model-second, continuous batching (gpu/scheduler.py: every request's
  chunks join each model's running batch at any decode step and leave it when they
  end) against one request at a time (its own chunks still batched), at 1, 4 and 16
  concurrent requests of mixed lengths; the codec's share (codes to audio, the same
  work either way) apart; and the same at 16 requests on the tests' one-layer models,
  for contrast;
- time to the first segment (the first chunk's first frames, delivered through
  `on_segment` as the listener stores and announces it) against time to the whole
  file, for an 800-character text;
- bytes sent per clone request: what the Modal engine spawns (gpu/modal_engine.py
  `request_payload`), serialised as Modal serialises a call's arguments, before
  (the normalised reference WAV in every request) and after (the voice's id, content
  hash and a signed Storage URL of it).

    python -m bench.inference            # prints the section, rewrites it in docs/performance.md

Every generation runs to the length real speech of its chunk has (the end-of-speech
id points at a suppressed token, so the random model never ends on its own), divided
by `--scale` so chunks keep their relative lengths; the random model still emits qwen-tts's own
end-of-speech code now and then, which ends its chunk there as it would end a real
one; `--cap` bounds the budgets to keep CPU runs short.

Why the real depths: what a batch shares is a decode step's sequential passes (one
through the talker's 28 layers, then 15 through the code predictor's 5), and what it
does not share is each row's arithmetic and the codec's per-sample work. The real
models have those depths at widths where a GPU step costs about the same for 1 or 16
rows; the one-layer test models do one shallow pass per step, so on a CPU their
codec outweighs generation and hides what batching saves (the contrast row shows it).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import random
import re
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.tiny_qwen import clone_job, stored_reference, synthetic_reference
from bench.tiny_qwen_model import CODEBOOK_SIZE, REAL_DEPTH, Depth, build_tiny_model
from devstack.settings import ROOT
from gpu.engine import CloneRequest, VoiceReference
from gpu.jobs import SynthesisJob
from gpu.modal_engine import ModalEngine
from gpu.qwen_runtime import QwenRuntime, RuntimeSettings
from gpu.scheduler import ChunkScheduler
from gpu.text import CODEC_FRAMES_PER_SECOND, detect_script, speech_chunks

REPORT = ROOT / "docs" / "performance.md"


def markers(device: str) -> tuple[str, str]:
    """Each device has a section of its own: `make bench` rewrites the CPU's, a run on
    a GPU machine (`--device cuda`) its own, and neither overwrites the other."""
    name = "speech-scheduling" if device == "cpu" else f"speech-scheduling-{device}"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank. "
# Mixed lengths: a one-liner, a paragraph, a page (1, 1 and 4 chunks of English).
LENGTHS = (56, 200, 800)


# How to read the section; kept with the code that measures it.
GOALS = (
    "Goals (issue: speech that starts sooner and costs less): at 16 concurrent requests",
    "continuous batching at least 3x the requests per model-second of one at a time;",
    "the first audio of an 800-character text under 15 % of the whole job; a clone",
    "request under 1 KB.",
    "",
)
NO_HEAD_OF_LINE_WAIT = (
    "- **No head-of-line wait**: a short request that arrives while a long one runs",
    "  starts at the next decode step (the last place of a batch is kept for a request",
    "  with nothing running) and is answered when its own chunk ends, not after the",
    "  long job (ordering proved in `tests/gpu/test_scheduler.py`, and end to end",
    "  through the listener in `tests/listener/test_short_behind_long.py`).",
)


@dataclass(frozen=True)
class Comparison:
    """The same requests one at a time and with continuous batching."""

    requests: int
    alone: Timing
    batched: Timing
    spread: tuple[float, float] = (0.0, 0.0)  # the lowest and highest speed-up of the runs

    @property
    def speed_up(self) -> float:
        return self.alone.seconds / self.batched.seconds

    @property
    def generation_speed_up(self) -> float:
        """The speed-up with the codec's time taken out of both."""
        return self.alone.generation_seconds / self.batched.generation_seconds

    @property
    def codec_share(self) -> float:
        """The codec's share of continuous batching's time."""
        return self.batched.codec_seconds / self.batched.seconds

    def row(self) -> str:
        alone, batched = self.alone, self.batched
        return (
            f"| {self.requests} | {self.requests / alone.seconds:.2f} | {alone.steps} | "
            f"{alone.codec_seconds:.2f} | {self.requests / batched.seconds:.2f} | "
            f"{batched.steps} | {batched.codec_seconds:.2f} | {self.speed_up:.1f}x | "
            f"{self.generation_speed_up:.1f}x |"
        )


def batching_note(device: str, real: Comparison, shallow: Comparison) -> str:
    """The verdict at 16 concurrent requests on the real-depth models, and the same
    requests on the one-layer test models beside it."""
    verdict = "met" if real.speed_up >= 3 else "missed"
    points = [
        f"**Batching speed-up: {verdict}** ({real.speed_up:.1f}x at 16 concurrent requests on"
        f" `{device}`, {real.spread[0]:.1f}x to {real.spread[1]:.1f}x across the runs;"
        f" {real.generation_speed_up:.1f}x for generation alone, the codec apart). A chunk"
        " joins a running batch at the next decode step and leaves it the step it ends, so"
        " no row idles while a longer one finishes and a step's sequential passes are"
        f" shared by every row in it: {real.alone.steps} steps one request at a time against"
        f" {real.batched.steps}. Turning codes into audio (the 12 Hz codec) is the same work"
        f" either way; it was {100 * real.codec_share:.0f} % of continuous batching's time"
        " here.",
        f"On the tests' one-layer models the same 16 requests give {shallow.speed_up:.1f}x"
        f" ({shallow.generation_speed_up:.1f}x without the codec): with one shallow pass per"
        " step, generating costs little and the codec, which renders every 24 kHz sample"
        f" either way, is {100 * shallow.codec_share:.0f} % of the time, so there the ratio"
        " measures the codec more than the scheduler."
        + (
            " On a GPU a step's cost hardly grows with its rows, so the ratio approaches the"
            " ratio of decode steps; the GPU section is measured with `--device cuda`."
            if device == "cpu"
            else ""
        ),
    ]
    return "\n".join(
        textwrap.fill(point, width=88, initial_indent="- ", subsequent_indent="  ")
        for point in points
    )


CLONE_NOTE = (
    "- **Clone request size: met.** A clone request names the voice's prepared",
    "  reference (voice id, content hash, a signed Storage URL) and carries its",
    "  transcript as text, never the audio; the GPU side keeps the clone prompt per",
    "  voice and hash and fetches the reference only to rebuild a prompt it lacks",
    '  (`docs/gpu.md`, "Voice prompts"). The text to speak travels as it must; the',
    "  figure besides it is what the goal bounds. A long typed transcript (of an",
    "  upload that could not be cut) makes a request longer by its length, as text.",
)


def first_audio_note(share: float, head_frames: int) -> str:
    verdict = "met" if share < 0.15 else "missed"
    return "\n".join([
        f"- **First audio: {verdict}** ({100 * share:.1f} %). The first segment is the first",
        f"  chunk's first {head_frames} codec frames (about a second of speech, scaled as the",
        "  chunks are), decoded as soon as they are generated, while every chunk of the text",
        "  runs side by side in the batch; the whole file is done when its longest chunk",
        "  is. The segment reaches a browser one storage write and one database call later",
        "  (`tests/listener/test_streamed_segments.py`).",
    ])  # fmt: skip


def text_of(length: int) -> str:
    return (SENTENCE * (length // len(SENTENCE) + 1))[:length].rstrip() + "."


@dataclass(frozen=True)
class Timing:
    seconds: float
    steps: int  # decode steps, every model's counted
    codec_seconds: float  # of `seconds`, turning codes into audio

    @property
    def generation_seconds(self) -> float:
        return self.seconds - self.codec_seconds


def one_at_a_time(runtime: QwenRuntime, jobs: list[SynthesisJob]) -> Timing:
    """The old shape: each request alone (its own chunks still batched together)."""
    steps = 0
    codec = runtime.codec_seconds
    start = time.perf_counter()
    for job in jobs:
        scheduler = ChunkScheduler(runtime)
        request = scheduler.submit(job)
        while scheduler.step():
            pass
        request.future.result()
        steps += scheduler.steps
    return Timing(time.perf_counter() - start, steps, runtime.codec_seconds - codec)


def continuous(runtime: QwenRuntime, jobs: list[SynthesisJob]) -> Timing:
    scheduler = ChunkScheduler(runtime)
    codec = runtime.codec_seconds
    start = time.perf_counter()
    requests = [scheduler.submit(job) for job in jobs]
    while scheduler.step():
        pass
    for request in requests:
        request.future.result()
    seconds = time.perf_counter() - start
    return Timing(seconds, scheduler.steps, runtime.codec_seconds - codec)


def short_behind_long(
    runtime: QwenRuntime, long: SynthesisJob, short: SynthesisJob
) -> tuple[float, float]:
    """Seconds until a short request submitted just after a long one is answered:
    one request at a time (first come, first served), then continuous batching."""
    start = time.perf_counter()
    one_at_a_time(runtime, [long, short])
    in_turn = time.perf_counter() - start
    scheduler = ChunkScheduler(runtime)
    start = time.perf_counter()
    scheduler.submit(long)
    answered = scheduler.submit(short)
    while not answered.done and scheduler.step():
        pass
    batched = time.perf_counter() - start
    while scheduler.step():
        pass
    return in_turn, batched


def first_segment_and_whole(runtime: QwenRuntime, job: SynthesisJob) -> tuple[float, float, int]:
    """Seconds until the first segment is delivered (`on_segment`, what the listener
    stores and announces) and until the whole file is answered."""
    scheduler = ChunkScheduler(runtime)
    first: list[float] = []
    start = time.perf_counter()
    request = scheduler.submit(
        job, on_segment=lambda index, count, audio: first.append(time.perf_counter() - start)
    )
    while scheduler.step():
        pass
    request.future.result()
    return first[0], time.perf_counter() - start, request.total


class SpokenLengths(QwenRuntime):
    """Every chunk generated to the length real speech of it has, divided by `scale`:
    its characters at its script's typical reading rate, 12 codec frames a second
    (gpu/text.py). The random model never ends on its own, and the real models end at
    about that length, well inside their budgets (`token_budget` allows the slowest
    reading plus a margin and a floor); so a one-sentence chunk ends sooner than a
    17-second one, as it does on a GPU. Never past the configured cap."""

    def __init__(self, settings: RuntimeSettings, scale: float) -> None:
        super().__init__(settings)
        self.scale = scale

    def budget(self, text: str) -> int:
        script = detect_script(text)
        frames = len(text) / script.chars_per_second * CODEC_FRAMES_PER_SECOND
        return min(super().budget(text), max(2, math.ceil(frames / self.scale)))


# A 12 s reference's transcript, about 30 words.
REFERENCE_TRANSCRIPT = (
    "Thanks for calling. I'm recording this short sample so the app can learn my voice, "
    "and I'll read it slowly and clearly, the way I'd speak to a friend."
)


def signed_reference_url(user_id: str, voice_id: str, seconds: int = 7200) -> str:
    """A URL shaped as Supabase Storage signs one (an HS256 JWT of the object's path
    and expiry in `token`), the length that matters here."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    path = f"references/{user_id}/{voice_id}/normalized.wav"
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(
        json.dumps({"url": path, "iat": 1_795_000_000, "exp": 1_795_000_000 + seconds}).encode()
    )
    signature = b64(hmac.digest(b"bench", f"{header}.{claims}".encode(), hashlib.sha256))
    return f"https://abcdefghijklmnopqrst.supabase.co/storage/v1/object/sign/{path}?token={header}.{claims}.{signature}"


@dataclass(frozen=True)
class RequestSize:
    before: int  # the same request carrying the normalised reference, as it used to
    after: int
    text: int  # the text to speak, as serialised inside `after`


def clone_request_bytes(text: str) -> RequestSize:
    """What the Modal engine spawns for one clone request, serialised as Modal
    serialises a call's arguments (modal 1.6.4, modal/_utils/function_utils.py
    `_create_input`: `serialize((args, kwargs))`)."""
    from modal._serialization import serialize

    wav = synthetic_reference()
    user_id, voice_id = (
        "5b1e2d3c-4a5b-4c6d-8e7f-8091a2b3c4d5",
        "0f1e2d3c-4b5a-4697-8877-665544332211",
    )
    reference = VoiceReference(
        voice_id=voice_id,
        sha256=hashlib.sha256(wav).hexdigest(),
        transcript=REFERENCE_TRANSCRIPT,
        url=signed_reference_url(user_id, voice_id),
    )
    work = SynthesisJob.for_clone(CloneRequest(text, "English", reference))
    payload = ModalEngine.request_payload(work, ticket="0" * 32)

    def size(sent: dict[str, object]) -> int:
        return len(serialize(((sent,), {})))

    return RequestSize(
        before=size(payload | {"reference_wav": wav}),
        after=size(payload),
        text=size(payload) - size(payload | {"text": ""}),
    )


def run(
    device: str = "cpu",
    cap: int = 64,
    batch: int = 16,
    repeats: int = 5,
    seed: int = 7,
    scale: float = 4.0,
) -> str:
    import torch

    # Every chunk here runs to the length the bench gives it, i.e. to its budget: the
    # scheduler's warning about chunks cut at their budget would be noise.
    logging.getLogger("gpu.scheduler").setLevel(logging.ERROR)
    if device == "cpu":
        # One thread: on a shared machine, more threads mostly measure the neighbours.
        torch.set_num_threads(1)
    rng = random.Random(seed)
    # About a second of speech, scaled as the chunks are.
    head_frames = max(1, math.ceil(CODEC_FRAMES_PER_SECOND / scale))
    long_chunks = len(speech_chunks(text_of(2000)))
    with tempfile.TemporaryDirectory(prefix="tiny-qwen-") as folder:
        root = Path(folder)
        reference = stored_reference(root)

        def runtime_of(depth: Depth, name: str) -> SpokenLengths:
            runtime = SpokenLengths(
                RuntimeSettings(
                    base_model=str(build_tiny_model(root / name / "base", "base", depth=depth)),
                    design_model=str(
                        build_tiny_model(root / name / "design", "voice_design", depth=depth)
                    ),
                    device=device,
                    max_batch_items=batch,
                    head_frames=head_frames,
                    generate_options={
                        "max_new_tokens": cap,
                        "eos_token_id": CODEBOOK_SIZE + 1023,
                    },
                ),
                scale,
            )
            runtime.load()
            # Warm-up: first-call allocations, and the clone prompts into the cache.
            continuous(runtime, [job(n, 56) for n in range(8)])
            return runtime

        def job(n: int, length: int) -> SynthesisJob:
            if n % 2:
                return SynthesisJob(
                    kind="design",
                    text=text_of(length),
                    language="English",
                    instruct="a calm voice",
                )
            return clone_job(reference, f"voice-{n % 4}", text_of(length))

        def compared(runtime: QwenRuntime, jobs: list[SynthesisJob]) -> Comparison:
            # The machine may be shared and its speed drifts: each run times both
            # modes back to back, and the run with the median ratio is reported.
            runs = sorted(
                (
                    Comparison(len(jobs), one_at_a_time(runtime, jobs), continuous(runtime, jobs))
                    for _ in range(repeats)
                ),
                key=lambda run: run.speed_up,
            )
            median = runs[len(runs) // 2]
            return dataclasses.replace(median, spread=(runs[0].speed_up, runs[-1].speed_up))

        runtime = runtime_of(REAL_DEPTH, "real-depth")
        mixes = [[job(n, rng.choice(LENGTHS)) for n in range(size)] for size in (1, 4, 16)]
        comparisons = [compared(runtime, jobs) for jobs in mixes]
        runs = sorted(first_segment_and_whole(runtime, job(0, 800)) for _ in range(repeats))
        first, whole, chunks = runs[len(runs) // 2]
        waits = sorted(short_behind_long(runtime, job(0, 2000), job(2, 56)) for _ in range(repeats))
        in_turn, interleaved = waits[len(waits) // 2]
        shallow = compared(runtime_of(Depth(), "one-layer"), mixes[-1])
        # What travels does not depend on the device (and a GPU machine may lack modal).
        sent = clone_request_bytes(text_of(800)) if device == "cpu" else None

    rows = [
        "| concurrent requests | one at a time: req / model-s | steps | codec s | "
        "continuous batching: req / model-s | steps | codec s | speed-up | "
        "speed-up without the codec |",
        "|---|---|---|---|---|---|---|---|---|",
        *(comparison.row() for comparison in comparisons),
    ]
    at_16 = comparisons[-1]
    start, end = markers(device)
    where = "" if device == "cpu" else f", {device_name(device)}"
    return "\n".join([
        start,
        f"## Speech scheduling (tiny Qwen3-TTS{where})",
        "",
        f"Generated by `python -m bench.inference{'' if device == 'cpu' else ' --device ' + device}`"
        f"{' (also part of `make bench`)' if device == 'cpu' else ''}. Tiny random",
        f"Qwen3-TTS models on `{device}` with the real checkpoints' depths (a 28-layer talker,",
        "a 5-layer code predictor, 16 codebooks, an 8-layer codec transformer) at tiny",
        "widths, every chunk generated to the length of real speech",
        "of it (its characters at the typical reading rate, 12 codec frames a second),",
        f"divided by {scale:g} and capped at {cap} codec steps, so chunks keep their relative",
        f"lengths; at most {batch} chunks in a model's running batch. Requests alternate",
        f"clone and design, lengths drawn from {', '.join(map(str, LENGTHS))} characters.",
        "Requests per model-second: requests done / seconds the model loop was busy.",
        f"Each of {repeats} runs times both modes back to back; the table shows the run",
        f"with the median speed-up{', on one torch thread' if device == 'cpu' else ''}.",
        "",
        *rows,
        "",
        f"Time to the first segment of an 800-character text ({chunks} chunks, the first a",
        f"short one): {first:.2f} s of {whole:.2f} s for the whole file",
        f"({100 * first / whole:.1f} %). The first segment is what the listener stores and",
        "announces to the browser while the rest is rendered (`on_segment`).",
        "",
        f"A 56-character request submitted right after a 2,000-character one ({long_chunks} chunks) is "
        f"answered after {interleaved:.2f} s with continuous batching, against "
        f"{in_turn:.2f} s one request at a time (the whole long job, then it).",
        "",
        *(
            [
                "Bytes sent per clone request (800 characters, 12 s reference), as the Modal",
                f"engine spawns it: before, with the reference audio: {sent.before:,}; after, by",
                f"reference: {sent.after:,}, of which {sent.text:,} are the text to speak and "
                f"{sent.after - sent.text:,} the rest.",
                "",
            ]
            if sent is not None
            else ["Bytes sent per clone request: in the CPU section (the same on any device).", ""]
        ),
        *GOALS,
        batching_note(device, at_16, shallow),
        *NO_HEAD_OF_LINE_WAIT,
        first_audio_note(first / whole, head_frames),
        *(CLONE_NOTE if sent is not None else ()),
        end,
    ])  # fmt: skip


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return str(torch.cuda.get_device_name(torch.device(device)))
    return device


def sections_in(report_text: str) -> dict[str, str]:
    """The speech-scheduling sections a report holds, by their start marker."""
    found = re.finditer(
        r"<!-- (speech-scheduling[\w-]*):start -->.*?<!-- \1:end -->", report_text, flags=re.S
    )
    return {match.group(0).splitlines()[0]: match.group(0) for match in found}


def write_section(section: str, report: Path = REPORT) -> None:
    """Replace this benchmark's section of the report (or append it)."""
    start, end = section.splitlines()[0], section.splitlines()[-1]
    text = report.read_text() if report.exists() else "# Performance\n"
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    report.write_text(text)


def main(argv: list[str] | None = None, write: Callable[[str], None] = write_section) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cap", type=int, default=64, help="codec steps per chunk at most")
    parser.add_argument(
        "--scale", type=float, default=4.0, help="chunk lengths divided by this (CPU runs)"
    )
    parser.add_argument(
        "--batch", type=int, default=16, help="rows in a model's running batch (the GPU class's)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    section = run(args.device, args.cap, args.batch, args.repeats, scale=args.scale)
    print(section)
    write(section)


if __name__ == "__main__":
    main()
