#!/usr/bin/env bash
# Installs what the project needs on a Debian machine, once: system packages,
# the Python virtualenv and the pinned npm tools. Fast when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql-15 postgresql-15-pgtap postgresql-15-plpgsql-check postgresql-15-cron espeak-ng sox ffmpeg)
command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: need root (or sudo) to install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}

# See requirements/qwen-nodeps.txt: torchaudio's CUDA-linked extensions cannot load
# beside the CPU torch; without them it runs as the pure-Python package we need.
strip_torchaudio_extensions() {
  .venv/bin/python - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
if spec and spec.origin:
    for library in (pathlib.Path(spec.origin).parent / "lib").glob("*.so"):
        library.unlink()
PY
}
# The stamp covers every file that decides what goes into .venv.
stamp=.venv/.bootstrap-$(cat pyproject.toml requirements/*.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating .venv from pyproject.toml"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  mkdir -p .local
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -r requirements/torch-cpu.txt &&
         .venv/bin/python -m pip install -q -e '.[dev,modal,qwen,sentry]' &&
         .venv/bin/python -m pip install -q --no-deps -r requirements/qwen-nodeps.txt &&
         strip_torchaudio_extensions; } >.local/pip-install.log 2>&1; then
    cat .local/pip-install.log >&2
    echo "bootstrap: pip install failed (log above, also in .local/pip-install.log)" >&2
    exit 1
  fi
  rm -f .venv/.bootstrap-*
  touch "$stamp"
fi

npm_stamp=node_modules/.bootstrap-$(sha256sum package-lock.json | cut -c1-16)
if [ ! -f "$npm_stamp" ]; then
  echo "bootstrap: installing npm tools from package-lock.json"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  touch "$npm_stamp"
fi
