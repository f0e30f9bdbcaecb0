"""Speech scheduling on the tiny Qwen3-TTS models (bench/tiny_qwen_model.py), on the
CPU unless `--device` says otherwise:

- requests per model-second, continuous batching (gpu/scheduler.py: every request's
  chunks round-robin into shared model calls) against one request at a time, at 1, 4
  and 16 concurrent requests of mixed lengths;
- time to the first chunk against time to the whole file, for an 800-character text;
- bytes sent per clone request (the wire job of gpu/jobs.py).

    python -m bench.inference            # prints the section, rewrites it in docs/performance.md

Every generation ends at its chunk's token budget (the end-of-speech id points at a
suppressed token) so runs are comparable; `--cap` bounds the budgets to keep CPU runs
short. The tiny models have the real pipeline with tiny widths: ratios carry over to a
GPU only as far as a GPU's batch cost does (see the notes the section prints).
"""

from __future__ import annotations

import argparse
import pickle
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.tiny_qwen import synthetic_reference
from bench.tiny_qwen_model import CODEBOOK_SIZE, build_tiny_model
from devstack.settings import ROOT
from gpu.jobs import SynthesisJob
from gpu.qwen_runtime import QwenRuntime, RuntimeSettings
from gpu.scheduler import ChunkScheduler

REPORT = ROOT / "docs" / "performance.md"
START = "<!-- speech-scheduling:start -->"
END = "<!-- speech-scheduling:end -->"

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank. "
# Mixed lengths: a one-liner, a paragraph, a page (1, 1 and 4 chunks of English).
LENGTHS = (56, 200, 800)


def text_of(length: int) -> str:
    return (SENTENCE * (length // len(SENTENCE) + 1))[:length].rstrip() + "."


@dataclass(frozen=True)
class Timing:
    seconds: float
    model_calls: int


def one_at_a_time(runtime: QwenRuntime, jobs: list[SynthesisJob]) -> Timing:
    """The old shape: each request alone (its own chunks still batched together)."""
    calls = 0
    start = time.perf_counter()
    for job in jobs:
        scheduler = ChunkScheduler(runtime)
        request = scheduler.submit(job)
        while scheduler.step():
            pass
        request.future.result()
        calls += scheduler.model_calls
    return Timing(time.perf_counter() - start, calls)


def continuous(runtime: QwenRuntime, jobs: list[SynthesisJob]) -> Timing:
    scheduler = ChunkScheduler(runtime)
    start = time.perf_counter()
    requests = [scheduler.submit(job) for job in jobs]
    while scheduler.step():
        pass
    for request in requests:
        request.future.result()
    return Timing(time.perf_counter() - start, scheduler.model_calls)


def first_chunk_and_whole(runtime: QwenRuntime, job: SynthesisJob) -> tuple[float, float, int]:
    scheduler = ChunkScheduler(runtime)
    first: list[float] = []
    start = time.perf_counter()
    request = scheduler.submit(
        job, on_progress=lambda fraction: first.append(time.perf_counter() - start)
    )
    while scheduler.step():
        pass
    request.future.result()
    return first[0], time.perf_counter() - start, request.total


def clone_request_bytes(job: SynthesisJob) -> int:
    """What crosses to Modal for one request: the wire dict, pickled as Modal's
    serializer sends it."""
    return len(pickle.dumps(job.to_wire()))


def run(device: str = "cpu", cap: int = 48, batch: int = 8, seed: int = 7) -> str:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="tiny-qwen-") as folder:
        root = Path(folder)
        runtime = QwenRuntime(
            RuntimeSettings(
                base_model=str(build_tiny_model(root / "base", "base")),
                design_model=str(build_tiny_model(root / "design", "voice_design")),
                device=device,
                max_batch_items=batch,
                generate_options={"max_new_tokens": cap, "eos_token_id": CODEBOOK_SIZE + 1023},
            )
        )
        runtime.load()
        reference = synthetic_reference()

        def job(n: int, length: int) -> SynthesisJob:
            if n % 2:
                return SynthesisJob(
                    kind="design",
                    text=text_of(length),
                    language="English",
                    instruct="a calm voice",
                )
            return SynthesisJob(
                kind="clone",
                text=text_of(length),
                language="English",
                reference_wav=reference,
                reference_transcript="A reference transcript.",
                voice_id=f"voice-{n % 4}",
            )

        # Warm-up: first-call allocations, and the clone prompts into the cache.
        continuous(runtime, [job(n, 56) for n in range(8)])

        rows = [
            "| concurrent requests | one at a time: req / model-s | calls | "
            "continuous batching: req / model-s | calls | speed-up |",
            "|---|---|---|---|---|---|",
        ]
        for concurrent in (1, 4, 16):
            jobs = [job(n, rng.choice(LENGTHS)) for n in range(concurrent)]
            alone = one_at_a_time(runtime, jobs)
            batched = continuous(runtime, jobs)
            rows.append(
                f"| {concurrent} | {concurrent / alone.seconds:.2f} | {alone.model_calls} | "
                f"{concurrent / batched.seconds:.2f} | {batched.model_calls} | "
                f"{alone.seconds / batched.seconds:.1f}x |"
            )
        first, whole, chunks = first_chunk_and_whole(runtime, job(0, 800))
        sent = clone_request_bytes(job(0, 800))

    return "\n".join([
        START,
        "## Speech scheduling (tiny Qwen3-TTS)",
        "",
        "Generated by `python -m bench.inference` (also part of `make bench`). Tiny random",
        f"Qwen3-TTS models on `{device}`, every chunk generated to its token budget (capped",
        f"at {cap} codec steps), at most {batch} chunks per model call. Requests alternate",
        f"clone and design, lengths drawn from {', '.join(map(str, LENGTHS))} characters.",
        "Requests per model-second: requests done / seconds the model loop was busy.",
        "",
        *rows,
        "",
        f"Time to the first chunk of an 800-character text ({chunks} chunks): "
        f"{first:.2f} s of {whole:.2f} s for the whole file ({100 * first / whole:.0f} %).",
        "",
        f"Bytes sent per clone request (800 characters, 12 s reference): {sent:,}: the",
        "normalised reference still travels with every request.",
        END,
    ])  # fmt: skip


def write_section(section: str, report: Path = REPORT) -> None:
    """Replace this benchmark's section of the report (or append it)."""
    text = report.read_text() if report.exists() else "# Performance\n"
    if START in text and END in text:
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    report.write_text(text)


def main(argv: list[str] | None = None, write: Callable[[str], None] = write_section) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cap", type=int, default=48, help="codec steps per chunk at most")
    parser.add_argument("--batch", type=int, default=8, help="chunks per model call")
    args = parser.parse_args(argv)
    section = run(args.device, args.cap, args.batch)
    print(section)
    write(section)


if __name__ == "__main__":
    main()
