#!/usr/bin/env bash
# GPU check for the Qwen3-TTS path, for a machine with no network (H100/H200,
# Python 3.12, torch 2.11 + torchaudio 2.11 (CUDA) and transformers 5.x preinstalled).
# Run from the repository root with the wheels named in docs/gpu.md in .whl/:
#
#   bash bench/gpu_check.sh            # tiny model on CUDA (bf16 + fp32) and the CPU
#
# It installs carried wheels into /tmp/site (--no-deps, never touching the machine's
# packages): always the versions qwen-tts pins (qwen-tts, transformers 4.57.3,
# tokenizers, accelerate, huggingface_hub 0.x and hf-xet), the others only where the
# machine lacks that package, so its own compiled stack (numpy, scipy...) stays in
# charge. /tmp/site goes first on PYTHONPATH so transformers 4.57.3 shadows the
# preinstalled 5.x. Then it checks the imports and bf16 SDPA attention on the GPU,
# and prints the timing tables of bench/tiny_qwen.py.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
shopt -s nullglob
wheels=(.whl/*.whl)
if ((${#wheels[@]} == 0)); then
  echo "gpu_check: no wheels in .whl/ (see docs/gpu.md, 'GPU check')" >&2
  exit 1
fi
mapfile -t needed < <($PY - "${wheels[@]}" <<'PY'
import sys
from importlib import metadata

PINNED = {"qwen-tts", "transformers", "tokenizers", "accelerate", "huggingface-hub", "hf-xet"}
for wheel in sys.argv[1:]:
    dist = wheel.rsplit("/", 1)[-1].split("-")[0].lower().replace("_", "-")
    try:
        metadata.version(dist)
        present = True
    except metadata.PackageNotFoundError:
        present = False
    if dist in PINNED or not present:
        print(wheel)
    else:
        print(f"gpu_check: {dist} is preinstalled; not installing the carried wheel", file=sys.stderr)
PY
)
echo "== installing ${#needed[@]} of ${#wheels[@]} carried wheels into $SITE"
$PY -m pip install -q --no-index --no-deps --target "$SITE" "${needed[@]}"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

echo "== imports"
$PY - <<'PY'
import importlib
for name in ("torch", "torchaudio", "numpy", "transformers", "tokenizers", "accelerate",
             "huggingface_hub", "safetensors", "librosa", "soundfile", "sox", "onnxruntime",
             "einops", "qwen_tts"):
    module = importlib.import_module(name)
    print(f"{name:16} {getattr(module, '__version__', '?'):14} {module.__file__}")
import torch
print("cuda:", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY

echo "== bf16 SDPA check"
$PY - <<'PY' || echo "gpu_check: the SDPA check failed (above); timings follow anyway"
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

q, k, v = (torch.randn(4, 16, 512, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
    try:
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        error = (out.float() - reference).abs().max().item()
        print(f"{backend.name:20} ok, max abs error vs fp32 {error:.4f}")
    except RuntimeError as exc:
        print(f"{backend.name:20} unavailable: {str(exc).splitlines()[0]}")
PY

echo "== tiny Qwen3-TTS timings"
status=0
$PY -m bench.tiny_qwen --device cuda --dtype bfloat16 --attn sdpa || status=1
$PY -m bench.tiny_qwen --device cuda --dtype float32 --attn sdpa || status=1
$PY -m bench.tiny_qwen --device cpu --dtype float32 --attn sdpa --repeats 1 || status=1
exit "$status"
