"""Times the real qwen-tts load and generation path on tiny random Qwen3-TTS models.

    python -m bench.tiny_qwen                         # CPU, float32
    python -m bench.tiny_qwen --device cuda --dtype bfloat16 --attn sdpa

Prints one Markdown table. The tiny models (bench/tiny_qwen_model.py) have the real
architecture and codec rates (12.5 code frames/s, 24 kHz) with tiny widths, so the
numbers measure per-step overhead of the pipeline (Python, kernel launches, the
codec decoder), not what the real 0.6B/1.7B models cost. Every generation runs
exactly --steps codec steps (the end-of-speech id is pointed at a suppressed token),
so runs are comparable. Not used by the tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.tiny_qwen_model import CODEBOOK_SIZE, build_tiny_model
from gpu.audio import encode_wav
from gpu.engine import CloneRequest, VoiceReference
from gpu.jobs import SynthesisJob
from gpu.qwen_runtime import QwenRuntime, RuntimeSettings

REFERENCE_SECONDS = 12.0


def synthetic_reference() -> bytes:
    from array import array

    rate = 24_000
    samples = array(
        "h",
        (
            round(8_000 * math.sin(2 * math.pi * (180 + 40 * math.sin(i / rate)) * i / rate))
            for i in range(int(REFERENCE_SECONDS * rate))
        ),
    )
    return encode_wav(samples, rate)


def stored_reference(folder: Path, voice_id: str = "voice-0") -> VoiceReference:
    """The synthetic reference written to `folder`, named as a generation names it: by
    voice id, content hash and a file:// URL (what the local storage stand-in signs)."""
    wav = synthetic_reference()
    path = folder / "normalized.wav"
    path.write_bytes(wav)
    return VoiceReference(
        voice_id=voice_id,
        sha256=hashlib.sha256(wav).hexdigest(),
        transcript="A reference transcript.",
        url=path.resolve().as_uri(),
    )


def clone_job(reference: VoiceReference, voice_id: str, text: str) -> SynthesisJob:
    """A clone job for `text` in the stored reference's voice, under `voice_id`."""
    voice = VoiceReference(voice_id, reference.sha256, reference.transcript, reference.url)
    return SynthesisJob.for_clone(CloneRequest(text, "English", voice))


def timed(function: Callable[[], Any], device: str) -> float:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median_of(repeats: int, function: Callable[[], Any], device: str) -> float:
    function()  # warm-up: first-call allocations and kernel selection
    return statistics.median(timed(function, device) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--steps", type=int, default=24, help="codec steps per generation")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="tiny-qwen-") as folder:
        root = Path(folder)
        start = time.perf_counter()
        base = build_tiny_model(root / "base", "base")
        design = build_tiny_model(root / "design", "voice_design")
        rows.append(("build both tiny models (CPU)", time.perf_counter() - start))

        runtime = QwenRuntime(
            RuntimeSettings(
                base_model=str(base),
                design_model=str(design),
                device=args.device,
                dtype=args.dtype,
                attn_implementation=args.attn,
                max_batch_items=args.batch,
                generate_options={
                    "max_new_tokens": args.steps,
                    # A suppressed codec id: generation always runs all steps.
                    "eos_token_id": CODEBOOK_SIZE + 1023,
                },
            )
        )
        rows.append(("load both models", timed(runtime.load, args.device)))
        reference = stored_reference(root)

        def clone(voice: str, text: str = "Hello there, how are you?") -> SynthesisJob:
            return clone_job(reference, voice, text)

        counter = iter(range(10**6))
        rows.append((
            f"clone prompt, {REFERENCE_SECONDS:.0f} s reference (uncached)",
            median_of(args.repeats, lambda: runtime.clone_prompt(clone(f"v{next(counter)}")), args.device),
        ))  # fmt: skip
        design_job = SynthesisJob(
            kind="design",
            text="Hello there, how are you?",
            language="English",
            instruct="a calm voice",
        )
        cases = {
            "clone, 1 text": [clone("cached")],
            f"clone, batch of {args.batch}": [clone(f"cached-{i % 2}") for i in range(args.batch)],
            "design, 1 text": [design_job],
            f"design, batch of {args.batch}": [design_job] * args.batch,
        }
        for label, jobs in cases.items():
            seconds = median_of(
                args.repeats, functools.partial(runtime.synthesize, jobs), args.device
            )
            rows.append((f"{label} ({args.steps} steps)", seconds))
            rows.append((f"  per codec step, {label}", seconds / args.steps))

    device_name = (
        torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else platform.processor() or "cpu"
    )
    print(f"\ntiny Qwen3-TTS on {args.device} ({device_name}), {args.dtype}, attn={args.attn}, "
          f"torch {torch.__version__}, median of {args.repeats}\n")  # fmt: skip
    print("| step | seconds |")
    print("|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
